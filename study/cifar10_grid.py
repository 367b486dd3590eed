from study.run import main
raise SystemExit(main("cifar10_grid")) if __name__ == "__main__" else None
