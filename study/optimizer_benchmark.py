from study.run import main
raise SystemExit(main("optimizer_benchmark")) if __name__ == "__main__" else None
