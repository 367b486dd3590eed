from study.run import main
raise SystemExit(main("lr_sensitivity")) if __name__ == "__main__" else None
