"""python -m study.cifar10_grid: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("cifar10_grid"))
