from study.run import main
raise SystemExit(main("mnist_regularization")) if __name__ == "__main__" else None
