"""Stage 4, images: search queries (KeyBERT), image search providers, a safe polite downloader,
content sniffing/resizing and a content-addressed image store."""
