"""Knowledge-base suggestions with 10,000 articles: latency p50/p99 and precision@3.

Loads the labelled set (tests/fixtures/kb: 101 articles, 240 calls, each with its right
article) and ``--articles`` minus 101 more, generated from a seed: articles about other
products and plans written with the same contact-center words (refunds, orders, passwords,
outages, SIMs...), linked to the same queues and IVR branches, so they compete with the
right answers. Then asks the suggestions of every labelled call (``kb.store.suggest``: the
queries, the candidates, the ranking) ``--passes`` times one after the other on one pool,
and once more with ``--concurrency`` asks at a time, and reports the latency of each ask
(p50, p99, max) and the precision@3 on the labelled calls with every article present
(and with the agent's notes alone, for comparison).

    .venv/bin/python bench/kb_suggest.py [--articles 10000] [--passes 3] [--concurrency 8] [--seed 23] [--no-idf]
                                         [--learn none|quarter|even] [--approve all|none] [--wrong-marks]
                                         [--hide-checking] [--sweep FILE] [--show-misses]

``--no-idf`` ranks the notes and tickets by ``ts_rank`` alone (no ``kb.store.LexemeStats``).
``--learn``: before measuring, agents mark the right article "Helped" (with the call's notes and
tickets) on the calls of the tuning half (``even``) or of its first quarter (``quarter``: calls
0 mod 4, the rest of the tuning half, calls 2 mod 4, to check a choice on), the synonyms
proposed from those marks (``kb.learn_store``) are all approved, as a KB admin who approved
every one would; the feedback counts are not touched. ``--marks shown``: only on the calls whose
right article was among the 3 suggested before (an agent marks what the pop showed), instead of
every one (``all``: the agent found it, suggested or searched); ``both``: the shown ones first,
measured (``after_shown``), then the others. ``before_learning`` is the precision@3 with every
input before the marks, in the same run. ``--approve none``: no
synonym proposal approved (the marks' words count only as words taught to their article).
``--wrong-marks``: a control, each mark's words recorded on another labelled article (a fixed
derangement). The asks (the passes, the 8 at once, ``all_learned``) use the words the marks
taught their articles (``kb.store.LearnedWords``; nothing to use without ``--learn``); the other
variants do not. ``--hide-checking`` prints no
figure of the checking half (odd calls): for runs that choose something.
``--sweep FILE`` (a JSON object, each name to ``kb.ranking.Weights`` fields and optionally
``candidates``) asks the tuning half only with each setting and prints its precision@3 (and on
the calls 2 mod 4); ``--show-misses`` prints the tuning half's misses (the right article, where
it stood, the top 3). Both print nothing of the checking half.

PostgreSQL: the server on 127.0.0.1:5432 (user postgres) when it answers, in a throw-away
database; else an embedded one.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.harness import scratch_database  # noqa: E402
from cti.migrate import migrate  # noqa: E402
from kb import learn_store, ranking, store  # noqa: E402
from kb.ranking import precision_at  # noqa: E402
from tests.integration import kb_labelled  # noqa: E402

PRODUCTS = """smart home hub|solar panels|home insurance|gift cards|loyalty points|business fibre|prepaid mobile|
family plan|tablet plan|smartwatch line|landline|home phone|cloud backup|antivirus|music streaming|
game pass|energy contract|gas meter|electric car charger|security camera|alarm system|printer ink plan|
laptop rental|phone insurance|device trade-in|refurbished phones|kids tablet|senior phone|hotspot|satellite tv|
radio package|magazine subscription|business phones|call centre seats|domain names|web hosting|email pro|
shared data|roaming pass|student plan|router rental|mesh wifi|fibre pro|tv box 4k|sports pass|cinema pass|
travel esim|company cars|fleet tracking|parcel lockers""".replace("\n", "").split("|")

ISSUES = [
    ("refund after cancelling {p}", "Refund the {p} subscription after a cancellation; the refund reaches the card in a few working days."),
    ("{p} bill explained", "Go through the {p} lines of the bill: monthly fee, usage, discounts and the prorata of the first month."),
    ("{p} payment failed", "When the {p} payment is refused or the debit bounces, offer a card payment and check the bank details."),
    ("order {p}", "Order {p} online or by phone; the order ships within two working days and is tracked by the courier."),
    ("{p} delivery problem", "A {p} parcel late, damaged or missing: check the tracking, the proof of delivery and open a claim."),
    ("return {p} equipment", "Return the {p} equipment with the prepaid label within 30 days, or a fee applies."),
    ("{p} password and login", "Log in to the {p} portal with the account e-mail; a reset link is sent when the password is forgotten."),
    ("{p} not working", "When {p} stops working, restart it, check the connection and the service status page for an outage."),
    ("{p} outage", "During a {p} outage the incident number and the repair estimate are on the status page; compensation follows long outages."),
    ("cancel {p}", "Cancel {p} with 30 days' notice; inside the minimum term an early termination fee may apply."),
    ("upgrade {p}", "Upgrade {p} to a higher tier from the account; the new price applies from the next bill."),
    ("{p} price change", "The {p} price changes once a year; customers are told 30 days ahead and may leave without fee."),
    ("{p} set up", "Set up {p}: activate it in the app, then follow the steps for the SIM, the router or the box as needed."),
    ("{p} security", "Suspicious activity on {p}: lock the account, reset the password and check recent orders with the fraud team."),
    ("move {p} to a new address", "Moving house: {p} moves with the customer when available at the new address; book it ahead."),
    ("{p} terms", "The {p} terms: minimum term, notice, fees, warranty, and how personal data is used."),
]
PLANS = ["", " (business)", " (prepaid)", " (legacy 2019)", " (student)", " (family)", " (premium)", " (basic)",
         " (north region)", " (south region)", " (promo)", " (partner shop)", " (online only)"]
QUEUES = ["billing", "tech", "accounts", "orders"]
LEAVES = ["billing_refunds", "billing_payments", "billing_invoices", "tech_internet", "tech_mobile", "tech_tv",
          "account_password", "account_details", "orders_tracking", "orders_problem", "orders_returns",
          "retention_contract"]


def product_id(p: str) -> str:
    return p.replace(" ", "-")


def filler(n: int, rng: random.Random) -> list[dict]:
    """``n`` generated English articles: product x issue x plan, with a second sentence about
    another product, linked to their product, half linked to a queue and a third to an IVR
    branch."""
    out = []
    combos = [(p, i, plan) for p in PRODUCTS for i in ISSUES for plan in PLANS]
    rng.shuffle(combos)
    for k in range(n):
        p, (title, body), plan = combos[k % len(combos)]
        extra = rng.choice(ISSUES)[1].format(p=rng.choice(PRODUCTS))
        links = [{"kind": "product", "target": product_id(p)}]
        if rng.random() < 0.5:
            links.append({"kind": "queue", "target": rng.choice(QUEUES)})
        if rng.random() < 0.3:
            links.append({"kind": "ivr", "target": rng.choice(LEAVES)})
        out.append({"key": f"filler-{k}", "language": "en", "title": (title.format(p=p) + plan)[:1].upper()
                    + (title.format(p=p) + plan)[1:], "tags": [p.split()[0], "generated"],
                    "body": f"{body.format(p=p)}\n\n{extra}\n", "links": links})
    return out


# (name, the customer's products known, options of kb.store.suggest)
VARIANTS = [
    ("before", False, {"synonyms": False, "idf_pick": False}),
    ("idf_pick", False, {"synonyms": False, "idf_pick": True}),
    ("products", True, {"synonyms": False, "idf_pick": False}),
    ("synonyms", False, {"synonyms": True, "idf_pick": False}),
    ("all", True, {"synonyms": True, "idf_pick": True}),
    # The ranking of a0fe3c0 / d638edb (BM25's b 0.3), to compare with in the same run.
    ("all_b0.3", True, {"synonyms": True, "idf_pick": True, "w": ranking.Weights(bm25_b=0.3)}),
    # With the words agents' marks taught the articles (``kb.store.LearnedWords``; nothing
    # without ``--learn``).
    # With the title pick of the too-common words and the open tickets put elsewhere left out
    # (both off by default: they did not hold on the checking half).
    ("all_title_route", True, {"synonyms": True, "idf_pick": True,
                               "w": ranking.Weights(title_pick=0.5, ticket_route=1.0)}),
    ("all_learned", True, {"synonyms": True, "idf_pick": True, "learned": "LEARNED"}),
]
LEARNED = store.LearnedWords()


HIDE_CHECKING = False


def halves(suggested: list[list[int]], right: list[int]) -> dict[str, float]:
    """precision@3 on the even-numbered calls (tuning; ``q2``: those 2 mod 4, not learned from
    with ``--learn quarter``), the odd ones (checking) and all."""
    out = {"even": round(precision_at(suggested[0::2], right[0::2]), 3),
           "q2": round(precision_at(suggested[2::4], right[2::4]), 3)}
    if not HIDE_CHECKING:
        out |= {"odd": round(precision_at(suggested[1::2], right[1::2]), 3),
                "all": round(precision_at(suggested, right), 3)}
    return out


async def learn_from(pool, calls: list[dict], right: list[int], step: int, stats,
                     shown: list[list[int]] | None = None, approve: bool = True,
                     wrong: dict[int, int] | None = None) -> list[str]:
    """Agents mark the right article helpful on calls 0, step, 2 step ... (with their notes and
    tickets; with ``shown``, only where it was among a call's suggestions); every synonym proposed
    from those marks is approved. Returns the approved pairs."""
    for i in range(0, len(calls), step):
        c, r = calls[i], right[i]
        if shown is not None and r not in shown[i][:3]:
            continue
        await learn_store.record_words(pool, article_id=wrong[r] if wrong else r, call_id=c["call"], agent="bench", source="helped",
                                       notes=c["notes"], ticket_titles=[t["title"] for t in c["tickets"]],
                                       stats=stats or store.LexemeStats())
    approved = []
    for p in await learn_store.synonym_proposals(pool, limit=500) if approve else []:
        d = await learn_store.decide_synonym(pool, p.proposal_id, approve=True, by="bench")
        approved.append(f"{d.language}:{d.word}={d.anchor}({d.calls})")
    return approved


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--products", type=int, default=2, help="generated products each caller's customer holds")
    ap.add_argument("--no-idf", action="store_true", help="rank notes and tickets by ts_rank alone")
    ap.add_argument("--learn", choices=("none", "quarter", "even"), default="none",
                    help="synonyms learned from Helped marks on the tuning half (or its first quarter)")
    ap.add_argument("--marks", choices=("all", "shown", "both"), default="all",
                    help="mark every learning call's right article, or only those the suggestions showed")
    ap.add_argument("--approve", choices=("all", "none"), default="all",
                    help="approve every synonym proposed from the marks, or none (the taught words alone)")
    ap.add_argument("--wrong-marks", action="store_true",
                    help="a control: each mark's words go to another labelled article (a fixed derangement)")
    ap.add_argument("--hide-checking", action="store_true", help="print no figure of the checking half")
    ap.add_argument("--sweep", type=Path, help="a JSON object {name: {Weights field: value, 'candidates': n}}: "
                    "each tried on the tuning half only (implies --hide-checking)")
    ap.add_argument("--show-misses", action="store_true", help="print the tuning half's misses (implies --hide-checking)")
    args = ap.parse_args()
    global HIDE_CHECKING
    HIDE_CHECKING = args.hide_checking or args.sweep is not None or args.show_misses
    sweep = json.loads(args.sweep.read_text()) if args.sweep else {}
    rng = random.Random(args.seed)
    labelled = kb_labelled.articles()
    calls = kb_labelled.calls()
    held = random.Random(args.seed + 1)
    holds = [tuple(product_id(p) for p in held.sample(PRODUCTS, args.products)) for _ in calls]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    async with scratch_database(prefix="cti_bench_kb") as scratch:
        await migrate(scratch.dsn)
        pool = await asyncpg.create_pool(scratch.dsn, min_size=args.concurrency, max_size=args.concurrency)
        try:
            t0 = time.perf_counter()
            ids = await kb_labelled.load(pool)
            extra = filler(max(args.articles - len(labelled), 0), rng)
            async with pool.acquire() as conn:
                await conn.copy_records_to_table(
                    "kb_articles", columns=["title", "body", "tags", "language", "owner"],
                    records=[(a["title"], a["body"], a["tags"], a["language"], "bench") for a in extra])
                first = await conn.fetchval("SELECT min(article_id) FROM kb_articles WHERE owner = 'bench'")
                await conn.copy_records_to_table(
                    "kb_article_links", columns=["article_id", "kind", "target"],
                    records=[(first + i, x["kind"], x["target"]) for i, a in enumerate(extra) for x in a["links"]])
                await conn.execute("VACUUM ANALYZE kb_articles")
                await conn.execute("VACUUM ANALYZE kb_article_links")
                total = await conn.fetchval("SELECT count(*) FROM kb_articles")
                version = await conn.fetchval("SHOW server_version")
            load_s = time.perf_counter() - t0
            stats = None if args.no_idf else store.LexemeStats()
            contexts = [dataclasses.replace(kb_labelled.context(c), products=h) for c, h in zip(calls, holds)]
            right = [ids[c["right"]] for c in calls]
            step = {"quarter": 4, "even": 2, "none": 0}[args.learn]
            wrong = None
            if args.wrong_marks:
                order = sorted(set(ids.values()))
                shifted = order[:]
                random.Random(args.seed + 2).shuffle(shifted)
                # a derangement: rotate the shuffled order by one
                wrong = {a: b for a, b in zip(shifted, shifted[1:] + shifted[:1])}
            if (sweep or args.show_misses) and step:
                print("learned", len(await learn_from(pool, calls, right, step, stats, approve=args.approve == "all",
                                                      wrong=wrong)), file=sys.stderr)
            tried = {}
            for name, over in sweep.items():
                over = dict(over)
                n_cand = int(over.pop("candidates", ranking.MAX_CANDIDATES))
                wt = dataclasses.replace(ranking.DEFAULT_WEIGHTS, **over)
                got, took = [], []
                for ctx in contexts[0::2]:                  # the tuning half only
                    t = time.perf_counter()
                    got.append([s.article_id for s in await store.suggest(pool, ctx, stats=stats, w=wt,
                                                                          candidates=n_cand, learned=LEARNED)])
                    took.append(time.perf_counter() - t)
                tried[name] = {"even": round(precision_at(got, right[0::2]), 3),
                               "q2": round(precision_at(got[1::2], right[2::4]), 3),
                               "p99_ms": round(pct(took, 0.99) * 1000, 1)}
                print(name, tried[name], file=sys.stderr, flush=True)
            if args.show_misses:                            # the tuning half only: what went wrong
                titles = {r["article_id"]: r["title"] for r in await pool.fetch(
                    "SELECT article_id, title FROM kb_articles")}
                for i in range(0, len(calls), 2):
                    got = await store.suggest(pool, contexts[i], stats=stats, limit=10, learned=LEARNED)
                    ids10 = [s.article_id for s in got]
                    if right[i] not in ids10[:3]:
                        c = calls[i]
                        print(json.dumps({"call": i, "notes": c["notes"], "tickets": [t["title"] for t in c["tickets"]],
                                          "ivr": c["ivr_path"], "queue": c["queue"], "right": titles[right[i]],
                                          "at": ids10.index(right[i]) + 1 if right[i] in ids10 else None,
                                          "top": [titles[x] for x in ids10[:3]]}, ensure_ascii=False), file=sys.stderr)
            if sweep or args.show_misses:
                print(json.dumps({"commit": commit, "articles": total, "sweep": tried}, indent=1))
                return
            before = [[s.article_id for s in await store.suggest(pool, ctx, stats=stats)] for ctx in contexts]
            learned: list[str] = []
            after_shown = None
            if step and args.marks in ("shown", "both"):
                learned += await learn_from(pool, calls, right, step, stats, before, approve=args.approve == "all",
                                            wrong=wrong)
                after_shown = halves([[s.article_id for s in await store.suggest(pool, ctx, stats=stats)]
                                      for ctx in contexts], right)
            if step and args.marks in ("all", "both"):
                # Every learning call marked (those already marked are marked again, unchanged).
                learned += await learn_from(pool, calls, right, step, stats, approve=args.approve == "all",
                                            wrong=wrong)
            for ctx in contexts[:20]:                       # warm the caches, as a running server is
                await store.suggest(pool, ctx, stats=stats)
            variants = {}
            for name, known, opts in VARIANTS:
                opts = {k: (LEARNED if v == "LEARNED" else v) for k, v in opts.items()}
                got, took = [], []
                for ctx in contexts:
                    t = time.perf_counter()
                    found = await store.suggest(pool, ctx if known else dataclasses.replace(ctx, products=()),
                                                stats=stats, **opts)
                    took.append(time.perf_counter() - t)
                    got.append([s.article_id for s in found])
                variants[name] = {**halves(got, right), "p50_ms": round(pct(took, 0.5) * 1000, 1),
                                  "p99_ms": round(pct(took, 0.99) * 1000, 1)}
            lat: list[float] = []
            suggested: list[list[int]] = []
            for n in range(args.passes):
                for ctx in contexts:
                    t = time.perf_counter()
                    got = await store.suggest(pool, ctx, stats=stats, learned=LEARNED)
                    lat.append(time.perf_counter() - t)
                    if n == 0:
                        suggested.append([s.article_id for s in got])
            notes_only = [[s.article_id for s in await store.suggest(pool, kb_labelled.context(c, only_notes=True),
                                                                 stats=stats)]
                          for c in calls]
            conc: list[float] = []
            sem = asyncio.Semaphore(args.concurrency)

            async def one(ctx):
                async with sem:
                    t = time.perf_counter()
                    await store.suggest(pool, ctx, stats=stats, learned=LEARNED)
                    conc.append(time.perf_counter() - t)

            t1 = time.perf_counter()
            await asyncio.gather(*(one(c) for c in contexts))
            conc_s = time.perf_counter() - t1
        finally:
            await pool.close()
    result = {
        "benchmark": "kb_suggest", "idf": not args.no_idf, "date": str(date.today()), "commit": commit, "articles": total,
        "labelled_articles": len(labelled), "calls": len(calls), "python": platform.python_version(),
        "postgresql": version, "cpus": os.cpu_count(), "load_s": round(load_s, 1),
        "sequential": {"asks": len(lat), "p50_ms": round(pct(lat, 0.5) * 1000, 1),
                       "p99_ms": round(pct(lat, 0.99) * 1000, 1), "max_ms": round(max(lat) * 1000, 1)},
        "concurrent": {"asks": len(conc), "at_once": args.concurrency, "p50_ms": round(pct(conc, 0.5) * 1000, 1),
                       "p99_ms": round(pct(conc, 0.99) * 1000, 1), "max_ms": round(max(conc) * 1000, 1),
                       "asks_per_s": round(len(conc) / conc_s, 1)},
        "products_held": args.products,
        "learn": args.learn, "marks": args.marks, "approve": args.approve, "wrong_marks": args.wrong_marks, "before_learning": halves(before, right),
        "after_shown": after_shown,
        "learned_synonyms": learned,
        **({} if HIDE_CHECKING else {"precision_at_3": round(precision_at(suggested, right), 3)}),
        "precision_at_3_halves": halves(suggested, right),
        "variants": variants,
        "precision_at_3_notes_only": halves(notes_only, right) if HIDE_CHECKING
        else round(precision_at(notes_only, right), 3),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
