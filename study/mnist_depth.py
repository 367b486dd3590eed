from study.run import main
raise SystemExit(main("mnist_depth")) if __name__ == "__main__" else None
