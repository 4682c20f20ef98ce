"""Retrieval drafting (datastore) and online n-gram drafting (ADED-style): datastore queries against a brute-force
numpy search, the online statistics against a plain-Python count, greedy SD == AR with chains and trees (alone and
in hybrids), the sampled law equals the enumerated target law (with a negative control), bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.runners.aded import aded_handle
from specjax.decode.loop import generate
from specjax.runners.hybrid import hybrid_handle
from specjax.runners.retrieval import build_datastore, datastore_handle, datastore_proposals
from specjax.sampling import GREEDY, SamplingConfig
from specjax.methods import make_method
from specjax.testing.stats import chi_square_pvalue
from tests.exact_tables import ALPHA, assert_target_law, decode_law_rows, first_tokens_law


def _brute_force(docs, suffix, max_ngram, min_ngram, m, min_count):
    """Continuations (most frequent, then smaller id) of the longest context ending the path (suffix newest first)
    that occurs in some document at least `min_count` times (once for n = 1); else [the query token]."""
    for n in range(max_ngram, min_ngram - 1, -1):
        ctx = list(suffix[:n])[::-1]
        if len(ctx) < n or min(ctx) < 0:
            continue
        count = {}
        for doc in docs:
            for j in range(len(doc) - n):
                if list(doc[j:j + n]) == ctx:
                    count[doc[j + n]] = count.get(doc[j + n], 0) + 1
        if count and (n == 1 or sum(count.values()) >= min_count):
            return sorted(count, key=lambda t: (-count[t], t))[:m], True
    return [suffix[0]], False


@pytest.mark.parametrize("max_ngram, min_ngram, min_count", [(3, 1, 1), (4, 2, 2)])
def test_datastore_query_matches_brute_force(max_ngram, min_ngram, min_count):
    rng = np.random.default_rng(max_ngram)
    docs = [rng.integers(0, 5, int(rng.integers(1, 40))).tolist() for _ in range(12)]
    store = build_datastore(docs, max_ngram=max_ngram, min_ngram=min_ngram, num_proposals=3, min_count=min_count)
    params = jax.tree.map(jnp.asarray, store)
    queries = rng.integers(0, 5, (300, max_ngram)).astype(np.int32)
    queries[:40, -2:] = -1                                           # paths shorter than max_ngram
    queries[40:50] = rng.integers(5, 8, (10, max_ngram))             # contexts the corpus never saw
    tokens, valid, counts = jax.jit(jax.vmap(lambda s: datastore_proposals(params, s)))(jnp.asarray(queries))
    for q, tok, ok in zip(queries, np.asarray(tokens), np.asarray(valid)):
        want, _ = _brute_force(docs, q.tolist(), max_ngram, min_ngram, 3, min_count)
        assert tok[ok].tolist() == want, q
        assert ok.tolist() == [True] * ok.sum() + [False] * (3 - ok.sum())     # a prefix
    # counts are the corpus counts, most frequent first
    assert np.all(np.diff(np.where(np.asarray(valid), np.asarray(counts), 0), axis=1) <= 0)


def _reference_aded(history, max_ngram, min_ngram, m, buckets, suffix):
    """Plain-Python ADED: absorb `history` with the eviction rules of `AdedRunner`, then the proposals for the
    path `suffix` (newest first): [(token, count)] of the longest stored context, by count then recency."""
    tables = {}
    levels = list(enumerate(range(min_ngram, max_ngram + 1)))

    def bucket(ctx, n):                                  # FNV-1a over uint32, as written in the spec of the hash
        h = 2166136261
        for t in ctx[:n]:
            h = ((h ^ (t + 1)) * 16777619) & 0xFFFFFFFF
        return h % buckets

    for p, x in enumerate(history):
        for l, n in levels:
            if p - n < 0:
                continue
            ctx = tuple(history[p - 1 - i] for i in range(n))
            stored, entries = tables.get((l, bucket(ctx, n)), (None, []))
            entries = list(entries) if stored == ctx else []
            hit = [i for i, e in enumerate(entries) if e[0] == x]
            if hit:
                entries[hit[0]] = (x, entries[hit[0]][1] + 1, p)
            elif len(entries) < m:
                entries.append((x, 1, p))
            else:
                entries[min(range(m), key=lambda i: (entries[i][1], entries[i][2]))] = (x, 1, p)
            tables[(l, bucket(ctx, n))] = (ctx, entries)
    for l, n in reversed(levels):
        ctx = tuple(suffix[:n])
        stored, entries = tables.get((l, bucket(ctx, n)), (None, []))
        if min(ctx) >= 0 and stored == ctx:
            return [(t, c) for t, c, _ in sorted(entries, key=lambda e: (-e[1], -e[2]))]
    return [(suffix[0], 1)]


def test_online_ngram_statistics_match_reference(tiny_pair):
    """After absorbing a history, every query's proposals and counts equal a plain-Python count with the same
    eviction rules (3 buckets: constant collisions and evictions)."""
    buckets = 3
    handle = aded_handle(tiny_pair[0].config, max_ngram=3, min_ngram=1, num_proposals=3, buckets=buckets)
    runner = handle.runner
    rng = np.random.default_rng(buckets)
    history = rng.integers(0, 5, 40).tolist()
    cache = handle.init_cache(1, 48)
    cache = cache.replace(history=cache.history.at[0, :40].set(jnp.asarray(history)))
    cache = jax.jit(jax.vmap(runner.absorb))(cache, jnp.asarray([40]))
    assert int(cache.counted[0]) == 40
    row = jax.tree.map(lambda a: a[0], cache)
    suffixes = rng.integers(0, 5, (30, 3)).astype(np.int32)
    tokens, valid, counts = (np.asarray(a) for a in jax.jit(jax.vmap(lambda s: runner.query(row, s)))(suffixes))
    for i, suffix in enumerate(suffixes.tolist()):
        want = _reference_aded(history, 3, 1, 3, buckets, suffix)
        assert list(zip(tokens[i][valid[i]].tolist(), counts[i][valid[i]].tolist())) == want, suffix


def _corpus(target, seed=3, rows=48, length=20):
    """The tiny target's own sampled continuations of random prompts (what the drafter retrieves from)."""
    rng = np.random.default_rng(seed)
    prompts = rng.integers(0, 16, (rows, 3)).astype(np.int32)
    out = generate(target, prompts, np.full(rows, 3), jax.random.key(seed), max_new_tokens=length,
                   sampling=SamplingConfig(temperature=0.7))
    return [list(p) + list(t) for p, t in zip(prompts.tolist(), np.asarray(out.tokens).tolist())]


@pytest.fixture(scope="module")
def store(tiny_pair):
    return build_datastore(_corpus(tiny_pair[0]), max_ngram=3, num_proposals=4)


def _drafters(target, store):
    config = target.config
    return {"rest": datastore_handle(config, store),
            "aded": aded_handle(config, max_ngram=3, buckets=16),
            "rest+aded": hybrid_handle(datastore_handle(config, store),
                                       aded_handle(config, max_ngram=3, buckets=16, repeat_unmatched=False))}


def test_greedy_retrieval_drafters_equal_autoregressive(tiny_pair, store, ragged_prompts, concurrently):
    """Each drafter alone with chains; their hybrid (datastore + online statistics) in a tree (the model +
    retrieval hybrid is decoded on SmolLM2 in tests/models/test_smollm2.py). The loops compile concurrently."""
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(7)
    drafters = _drafters(target, store)
    runs = [("rest+aded", "eagle"), ("aded", "chain"), ("rest", "chain")]          # the costliest compilation first

    def decode(name, method):
        options = dict(num_draft=3) if method == "chain" else dict(budget=6)
        return lambda: generate(target, tokens, lengths, key, method=make_method(method, **options),
                                drafter=drafters[name], max_new_tokens=24, sampling=GREEDY)

    *sds, ar = concurrently([decode(name, method) for name, method in runs] +
                            [lambda: generate(target, tokens, lengths, key, max_new_tokens=24, sampling=GREEDY)])
    for (name, method), sd in zip(runs, sds):
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"{name} {method}")
        assert sd.acceptance_length > 1.0, name           # the corpus and the history do predict the target


@pytest.mark.parametrize("name, method", [("rest", "chain"), ("rest+aded", "rsd-c")])
def test_retrieval_sampling_matches_exact_target_law(tiny_pair, store, name, method):
    target, _ = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    prompt = (3, 1, 4, 3)
    options = dict(num_draft=3) if method == "chain" else dict(budget=6)
    out = decode_law_rows(target, make_method(method, **options), sampling, _drafters(target, store)[name], prompt,
                          seed=11)
    pairs = assert_target_law(target, out.tokens, sampling, prompt)
    assert 1.0 < out.acceptance_length < 4.0               # some drafts accepted, some rejected: not vacuous
    # a finer negative control: the same samples reject the law of a slightly colder target
    colder, _ = first_tokens_law(target, prompt, SamplingConfig(temperature=0.8))
    assert chi_square_pvalue(pairs, colder.ravel()) < ALPHA


def test_bad_retrieval_configs_raise(tiny_pair, store):
    config = tiny_pair[0].config
    with pytest.raises(ValueError, match="max_ngram"):
        build_datastore([[1, 2, 3]], max_ngram=0)
    with pytest.raises(ValueError, match="min_ngram"):
        build_datastore([[1, 2, 3]], max_ngram=2, min_ngram=3)
    with pytest.raises(ValueError, match="min_count"):
        build_datastore([[1, 2, 3]], min_count=0)
    with pytest.raises(ValueError, match="vocabulary"):
        datastore_handle(config, build_datastore([[1, 2, 300, 2]]))
    with pytest.raises(ValueError, match="Datastore"):
        datastore_handle(config, [[1, 2, 3]])
    with pytest.raises(ValueError, match="buckets"):
        aded_handle(config, buckets=0)
    with pytest.raises(ValueError, match="ngram"):
        aded_handle(config, max_ngram=2, min_ngram=3)
    with pytest.raises(ValueError, match="n-gram / retrieval"):
        hybrid_handle(datastore_handle(config, store), tiny_pair[1])


def test_drafter_names():
    from specjax.apps.models import LoadedTarget, load_drafter, parse_drafter
    assert parse_drafter("rest") == ("rest", 4) and parse_drafter("aded:2") == ("aded", 2)
    assert parse_drafter("eagle+rest+lookup:3") == ("hybrid", [("eagle", None), ("rest", 4), ("lookup", 3)])
    for bad, why in [("rest:0", "context length"), ("aded:x", "context length"), ("rest:17", "context length"),
                     ("rest+eagle", "every part after the first"), ("rest+", "unknown drafter")]:
        with pytest.raises(ValueError, match=why):
            parse_drafter(bad)
    from specjax.apps.models import check_names
    check_names("random:tiny", "aded+lookup:2")
    with pytest.raises(ValueError, match="tokenizer"):
        check_names("random:tiny", "aded+rest")
    with pytest.raises(ValueError, match="trained for SmolLM2"):
        check_names("random:tiny", "eagle+aded")
    from specjax.testing.pairs import tiny_pair
    target = LoadedTarget(tiny_pair()[0], None, None, "random:tiny", random_weights=True)
    with pytest.raises(ValueError, match="tokenizer"):
        load_drafter("rest", target)
    hybrid = load_drafter("aded+lookup:2", target)
    assert hybrid.runner.name == "hybrid(aded:3+lookup:2)" and not hybrid.runner.lookup.repeat_unmatched
