"""What a study is and how it runs on Ray Tune: presets, search spaces, the runner, Parquet export."""
