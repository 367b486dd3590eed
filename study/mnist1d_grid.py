from study.run import main
raise SystemExit(main("mnist1d_grid")) if __name__ == "__main__" else None
