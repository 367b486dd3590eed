"""python -m study.mnist1d_grid: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("mnist1d_grid"))
