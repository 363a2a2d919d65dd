"""Stage 8, export: the MESED layout, Parquet/Hugging Face and WebDataset forms, with a dataset card."""
