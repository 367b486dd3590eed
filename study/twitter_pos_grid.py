from study.run import main
raise SystemExit(main("twitter_pos_grid")) if __name__ == "__main__" else None
