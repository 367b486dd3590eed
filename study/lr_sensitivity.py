"""python -m study.lr_sensitivity: the preset of that name (study.presets)."""

from study.run import main

if __name__ == "__main__":
    raise SystemExit(main("lr_sensitivity"))
