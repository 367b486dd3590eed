from study.run import main
raise SystemExit(main("stl10_grid")) if __name__ == "__main__" else None
