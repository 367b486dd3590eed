"""python -m study.stl10_grid: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("stl10_grid"))
