"""What ``hardneg VERB --help`` says before the options: a summary, an example command line and the files the
verb writes, per verb, kept beside each other to stay uniform. Module docstrings are read from source, without
importing the modules (``--help`` must not load torch)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from click.utils import make_default_short_help

ROOT = Path(__file__).resolve().parent


def doc(module: str, *, skip_first: bool = False) -> str:
    """A hardneg module's docstring read from its source (module or package), "" when it does not exist."""
    base = ROOT.joinpath(*module.split(".")[1:])
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    text = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "" if path else ""
    return verbatim(text.split("\n\n", 1)[-1] if skip_first else text)


def verbatim(text: str) -> str:
    """Keep a docstring's layout in --help (click rewraps paragraphs unless they start with \\b); reST's
    ``literal`` and trailing ``::`` are shown as `literal` and ``:``."""
    text = re.sub(r"::$", ":", text.replace("``", "`"), flags=re.M)
    paras = [p.strip("\n") for p in text.strip().split("\n\n")]
    return "\n\n".join("\b\n" + p for p in paras if p.strip())


INTRO = {
    "mine": "Mine hard negatives with one teacher and one or more strategies (encode and search once).",
    "inject": "Write a copy of a BEIR dataset with known false negatives: for a fraction of the train (query, "
              "positive) pairs, near-copies of the positive (title dropped, sentences shuffled, truncated) are added "
              "to the corpus, unlabelled, with a manifest (injected.json). Test qrels and queries are copied byte "
              "for byte; evaluation on such a folder drops the injected documents. `hardneg mine` on it reports each "
              "strategy's trap rate (docs/false-negatives.md).",
    "thin": "Write a copy of a BEIR dataset with thinned labels: per query of the split, keep K positives (highest "
            "grade first, equal grades in a seeded order; or --order random) and move the others to hidden.json: "
            "they stay in the corpus, unlabelled, as known false negatives. The corpus, the queries and the other "
            "splits' qrels (the test split included) are copied byte for byte, and judgements of grade 0 stay. "
            "Evaluation on such a folder puts the hidden positives back; `hardneg mine` on it reports each "
            "strategy's hidden-positive recall.",
    "diagnose": "False-negative diagnostics before training: per teacher and strategy, the hidden-positive catch "
                "rate (hide one positive of each multi-positive query, mine, count how often it comes back as a "
                "negative), negatives that are positives of near-duplicate queries, teacher overlap (Jaccard of "
                "top-n negatives) and score distributions.",
    "evaluate": "Evaluate a model on a BEIR split with BEIR-exact metrics (pytrec_eval): nDCG@10, Recall@100, MRR@10 "
                "and more. Exact search over the whole corpus.",
    "train": "Fine-tune a student on a mined JSONL (the project format written by `hardneg mine`) with contrastive "
             "InfoNCE over the positive, the hard negatives and in-batch negatives.",
    "run": "Mine -> train -> evaluate from one TOML config, with section.key=value overrides. Each stage is stored "
           "under a folder named by the hash of its spec and skipped when it exists, so a killed run resumes. "
           "Prints base vs fine-tuned metrics and writes results.json.",
    "recipe": "NV-Retriever-v1 recipe: build a decoder-LLM embedder (bidirectional attention, instruction-masked "
              "mean pooling, LoRA), train stage 1 and stage 2, evaluate. A stage's training keys default to "
              "[train]'s; sources are [[stageN.data]] tables (--stage1.data '{beir = \"scifact\"}'). Finished "
              "stages are skipped. See docs/nv-retriever.md and configs/nv-retriever-v1.toml.",
    "browse": "Write one self-contained HTML page (inline CSS, JS and data; no network; opens from file://) to "
              "inspect mined sets of the same data side by side: a query list with search (query text, qid, docid) "
              "and filters; per query the positives and each strategy's negatives with score, raw rank, teacher and "
              "badges (a labelled positive or a duplicate of one mined, an injected trap from injected.json, a "
              "hidden positive from hidden.json, audit reasons, the candidates the filters removed); per strategy "
              "the positive vs top-1 negative score distributions (the paper's Fig. 4). Built for up to 250,000 "
              "rows (110k rows x 2 strategies: about 19 MB); --limit N keeps the first N queries.",
}
DOCS = {"mine": ("hardneg.mining.strategy", True), "run": ("hardneg.experiments.config", True),
        "audit": ("hardneg.mining.audit", False), "calibrate": ("hardneg.mining.calibrate", False),
        "ablate": ("hardneg.experiments.ablate", False), "report": ("hardneg.report", False),
        "fn-report": ("hardneg.report.rates", False)}

# verb -> (example command line, files written)
EXAMPLES: dict[str, tuple[str, str]] = {
    "mine": ("hardneg mine --data ../shared/data/scifact --teacher minilm -s 'percpos(0.95)+topk(4)' -s 'topk(4)' "
             "--out mined/",
             "OUT/<strategy>/mined.jsonl and stats.json (+ st/, st.jsonl, flag.jsonl, triplets.jsonl with --export), "
             "OUT/mine_config.json, OUT/summary.json, OUT/config.resolved.json"),
    "inject": ("hardneg inject --data ../shared/data/scifact --out scifact-r30 --rate 0.3",
               "a BEIR folder at OUT with injected.json (it records the options)"),
    "thin": ("hardneg thin --data ../shared/data/nfcorpus --out nfcorpus-k1 --keep 1",
             "a BEIR folder at OUT with hidden.json (it records the options)"),
    "diagnose": ("hardneg diagnose --data ../shared/data/scifact --out diag/ -s 'percpos(0.95)+topk(4)'",
                 "OUT/diagnostics.json, diagnostics.md, scores-<teacher>.png, config.resolved.json"),
    "audit": ("hardneg audit mined/topk-4 --data ../shared/data/scifact --out audit/ --fail-on labelled_positive",
              "OUT/audit.jsonl, OUT/audit.json, OUT/config.resolved.json (+ a cleaned copy with --fix)"),
    "calibrate": ("hardneg calibrate --data ../shared/data/scifact --teacher minilm --filter percpos --out calib/",
                  "OUT/calibrate.md, .csv, .json, .png, OUT/config.resolved.json"),
    "evaluate": ("hardneg evaluate --model minilm --data ../shared/data/scifact --split test --out eval/",
                 "with --out: OUT/metrics.json, per_query.json, run.trec, config.resolved.json"),
    "train": ("hardneg train --mined mined/percpos-0.95_topk-4/mined.jsonl --out model/ --bf16 auto",
              "a sentence-transformers model folder at OUT with train_config.json, loss_curve.json/.png and "
              "config.resolved.json"),
    "run": ("hardneg run configs/scifact.toml train.epochs=2   (or: --train.epochs 2)",
            "run.out/config.resolved.json, results.json, timings.json and run.out/stages/<kind>-<hash>/"),
    "ablate": ("hardneg ablate configs/ablate-scifact.toml --strategy 'topk(4)' --seed 0",
               "run.out/results.jsonl (one line per point), ablation.json, stages/"),
    "report": ("hardneg report runs/ablate/results.jsonl --out report/",
               "OUT/table.md, table.csv, best.md, mining.md, cost.md, fig*.png (+ teachers.md, sampling.md)"),
    "fn-report": ("hardneg fn-report --rate 0=a/results.jsonl --rate 0.3=b/results.jsonl --out fn/",
                  "OUT/table.md, table.csv, fig_rates.png"),
    "recipe": ("hardneg recipe configs/nv-retriever-v1.toml --stage1.max-steps 10 --stage2.max-steps 10",
               "recipe.out/config.resolved.json, results.json and stages/"),
    "browse": ("hardneg browse mined/ --out browse.html --data ../shared/data/scifact", "one HTML file at OUT"),
}

CONFIG_NOTE = ("Every option is also a key of --config FILE ({files}) and of a trailing TABLE.KEY=VALUE override "
               "(tables: {tables}); precedence: flags > overrides > file > defaults.")
# what --config reads (recipe's config.resolved.json is the built RecipeConfig, not its tables: docs/architecture.md)
CONFIG_FILES = {"recipe": "TOML or JSON"}
RESOLVED = "TOML, or the config.resolved.json of an earlier run"


def short_help(verb: str) -> str:
    """The one line `hardneg --help` lists: the verb's first sentence, without a leading "`hardneg VERB`: "."""
    module, _ = DOCS.get(verb, (None, False))
    text = INTRO.get(verb) or (doc(module).replace("\b\n", "") if module else "")
    first = re.sub(r"^`hardneg [a-z-]+`: ", "", text.strip().split("\n\n")[0]).replace("\n", " ")
    first = first.split(". ")[0].rstrip(".")
    word = first.split(" ", 1)[0]
    return make_default_short_help(first if "." in word else first[:1].upper() + first[1:], 60)


def verb_help(verb: str, tables: list[str], arguments: list[tuple[str, str]]) -> str:
    """The whole help text of a verb, before click's option list."""
    module, skip = DOCS.get(verb, (None, False))
    parts = [INTRO[verb]] if verb in INTRO else []
    if module:
        parts.append(doc(module, skip_first=skip))
    if arguments:
        parts.append("\b\nArguments:\n" + "\n".join(f"  {name}  {text}" for name, text in arguments))
    if tables:
        parts.append(CONFIG_NOTE.format(files=CONFIG_FILES.get(verb, RESOLVED),
                                        tables=", ".join(f"[{t}]" for t in tables)))
    ex, writes = EXAMPLES[verb]
    parts.append(f"\b\nExample:\n  {ex}\n\nWrites: {writes}.")
    return "\n\n".join(p for p in parts if p)
