"""Stage 5, rerank: score image candidates with paper eq. 1 (CLIP + Faster R-CNN objects vs the infobox image)."""
