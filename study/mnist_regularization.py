"""python -m study.mnist_regularization: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("mnist_regularization"))
