from study.run import main
raise SystemExit(main("optuna")) if __name__ == "__main__" else None
