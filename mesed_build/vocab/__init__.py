"""Stage 3, the candidate vocabulary: negatives (random, BM25, polysemous) and Wikidata hard positives.

- `stage`: the vocabulary stage (`run(ctx)`), adding negatives before the sentences stage runs;
- `random`, `bm25`, `polysemy`: how each kind of negative is found;
- `wikidata`: the SPARQL client (labels and aliases, title -> QID), `synonyms`: the synonyms stage.
"""
