"""python -m study.optimizer_benchmark: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("optimizer_benchmark"))
