"""Every command's arguments, in one light module: building the parser imports none of jax, music21 or sklearn.

Each ``add_NAME(subparsers)`` adds the parser of ``govjax NAME`` and sets ``target`` to ``"module:function"``,
the function :func:`govjax.cli.main` imports and calls with the parsed arguments (only then are the heavy libraries
loaded). A command with subcommands sets ``help_parser`` so that calling it bare prints its help.

Example:
  >>> import argparse
  >>> parser = argparse.ArgumentParser(prog="govjax")
  >>> add_train(parser.add_subparsers())
  >>> args = parser.parse_args(["train", "--config", "c.py", "--workdir", "w", "--set", "num_steps=5"])
  >>> args.target, args.overrides
  ('govjax.commands.train:run', ['num_steps=5'])
"""

from __future__ import annotations

import argparse

from govjax.core.modes import PROBE_DIRECTIONS, PROBE_SIGNALS

__all__ = ["BENCHES", "COMMANDS", "DEFAULT_MANIFEST"]

DEFAULT_MANIFEST = "manifest"  # a run's manifest folder (WORKDIR/manifest) and the lookup's default
DATA_DIR_HELP = "prepared data (default: $GOVJAX_DATA_DIR or ~/.cache/govjax/data)"
PRECONDITIONING = ("none", "update", "both")  # govjax index --precondition
STRUCTURAL_HELP = "add the generated structural works (govjax.data.structural)"


def add_audit(subparsers) -> None:
  parser = subparsers.add_parser("audit", help="memorization audit of a run: extraction, membership, exposure")
  parser.add_argument("--workdir", required=True, help="run directory written by `govjax train`")
  parser.add_argument("--k", type=int, default=32, help="prompt length (tokens)")
  parser.add_argument("--m", type=int, default=32, help="greedy continuation length (tokens)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--batch-size", type=int, default=64, help="windows decoded at once")
  parser.add_argument("--max-windows-per-work", type=int, default=None,
                      help="audit at most this many windows per work (seeded choice; default: all)")
  parser.add_argument("--seed", type=int, default=0, help="seed for window choice and canary references")
  parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
  parser.set_defaults(target="govjax.commands.audit:run")


def add_index(subparsers) -> None:
  parser = subparsers.add_parser("index", help="build the influence (TracIn) index of a training run")
  parser.add_argument("--workdir", required=True, help="run directory written by `govjax train`")
  parser.add_argument("--k", type=int, default=512, help="projection dimension")
  parser.add_argument("--seed", type=int, default=0, help="projection seed")
  parser.add_argument("--projection", default="sparse", choices=("sparse", "rademacher", "gaussian"))
  parser.add_argument("--normalize", action="store_true", help="divide features by their unmasked norm (TrackStar)")
  parser.add_argument("--precondition", nargs="?", const="both", default="none", choices=PRECONDITIONING,
                      help="Adam second-moment preconditioning: 'none' (default) plain TracIn; 'update' indexes each "
                           "example's Adam step and scores raw query gradients (TracIn-Adam: better on unrouted runs, "
                           "far worse on routed ones in experiments/attribution.py); 'both' preconditions queries too "
                           "(TrackStar)")
  parser.add_argument("--aggregate", default="interval", choices=("interval", "union"),
                      help="routing-log masks per checkpoint interval or over the whole run")
  parser.add_argument("--microbatch", type=int, default=32, help="examples per per-example-gradient call")
  parser.add_argument("--steps", type=int, nargs="*", default=None, help="checkpoint steps (default: all)")
  parser.set_defaults(target="govjax.commands.index:run")


def add_lookup(subparsers) -> None:
  parser = subparsers.add_parser("lookup", help="look a work file up in the training-set manifest")
  parser.add_argument("work_file", metavar="WORK_FILE",
                      help="MusicXML / MIDI / ABC / Humdrum, image or text file")
  parser.add_argument("--manifest", default=None,
                      help=f"manifest directory or croissant.json (default: WORKDIR/{DEFAULT_MANIFEST} or "
                           f"./{DEFAULT_MANIFEST})")
  parser.add_argument("--workdir", default=None,
                      help="training run directory (audit/per_work.jsonl, provenance/lineage/*.json)")
  parser.add_argument("--near-copy-threshold", type=float, default=0.45, help="minimum estimated Jaccard (text)")
  parser.add_argument("--copy-threshold", type=float, default=0.5,
                      help="music near-copy: minimum share of the query found in the record and of the record in it")
  parser.add_argument("--partial-threshold", type=float, default=0.8,
                      help="music partial copy: minimum share of the query in the record (or of the record in it)")
  parser.add_argument("--melody-threshold", type=float, default=0.62,
                      help="same tune: minimum share of the record's tune matched by one voice of the query")
  parser.add_argument("--one-voice-threshold", type=float, default=0.7,
                      help="one-voice query and one-voice record: minimum tune score for any music answer")
  parser.add_argument("--exhaustive", action="store_true", help="align every record, not only the candidates")
  parser.add_argument("--json", action="store_true", help="print the result as JSON")
  parser.set_defaults(target="govjax.commands.lookup:run")


def add_manifest(subparsers) -> None:
  parser = subparsers.add_parser("manifest",
                                 help="write the training-set manifest (Croissant 1.1, tiers 1-3)")
  parser.add_argument("--workdir", default=None,
                      help="training run directory: document the run's works and treatments in WORKDIR/manifest")
  parser.add_argument("--out", default=None, help="output directory (default: WORKDIR/manifest or ./manifest)")
  parser.add_argument("--data-dir", default=None,
                      help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.add_argument("--from-corpus", action="store_true",
                      help="parse music21's corpus directly instead of reading the prepared data")
  parser.add_argument("--max-works", type=int, default=None,
                      help="with --from-corpus: at most this many works")
  parser.add_argument("--records", default="real",
                      help="rights records: 'real', 'default' (simulated scenario) or a .jsonl/.csv file")
  parser.add_argument("--seed", type=int, default=0, help="seed of the simulated scenario")
  parser.add_argument("--policy", default="default", help="policy: 'default' or a .json/.py file")
  parser.add_argument("--num-groups", type=int, default=None,
                      help="model depth groups L = num_layers + 2 (default: the default model's)")
  parser.add_argument("--include-structural", action="store_true", help="add the generated structural works")
  parser.add_argument("--fingerprint-from", choices=("source", "tokens"), default="source",
                      help="fingerprint the source files' SATB voices (default) or the tokens")
  parser.add_argument("--workers", type=int, default=2, help="parsing processes (default 2)")
  parser.add_argument("--name", default="govjax-chorales", help="dataset name")
  parser.add_argument("--version", default="1.0.0", help="dataset version")
  parser.add_argument("--url", default=None, help="dataset URL (default: a urn:govjax: URN)")
  parser.add_argument("--date", default=None, help="datePublished (ISO date; default today)")
  parser.add_argument("--json", action="store_true", help="print the summary as JSON")
  parser.set_defaults(target="govjax.commands.manifest:run")


def add_prepare(subparsers) -> None:
  parser = subparsers.add_parser("prepare", help="prepare a dataset (offline, once)")
  datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
  chorales = datasets.add_parser(
      "chorales", help="Bach chorales from music21's bundled corpus as a TFDS array_record dataset"
  )
  chorales.add_argument("--data-dir", default=None,
                        help="root data dir (default: $GOVJAX_DATA_DIR or ~/.cache/govjax/data)")
  chorales.add_argument("--steps-per-quarter", type=int, default=4,
                        help="grid steps per quarter note (4: 16ths)")
  chorales.add_argument("--max-works", type=int, default=None,
                        help="build a small version with at most N works (N >= 3; every split non-empty)")
  chorales.add_argument("--workers", type=int, default=None,
                        help="parsing processes (default: 2 for the whole corpus, 1 with --max-works)")
  chorales.add_argument("--no-progress", action="store_true", help="no progress bars")
  chorales.set_defaults(target="govjax.commands.prepare:run")


def add_report(subparsers) -> None:
  parser = subparsers.add_parser("report", help="build report.html (figures, tables) of a study or run directory")
  parser.add_argument("--workdir", required=True, help="a directory written by `govjax study` / `make demo`")
  parser.add_argument("--premise", default=None,
                      help="a premise.json (experiments/results/premise.json) to add as a section of a study report")
  parser.set_defaults(target="govjax.commands.report:run")


def add_rights(subparsers) -> None:
  parser = subparsers.add_parser("rights", help="rights records: validate, summarise a policy, scenarios")
  sub = parser.add_subparsers(dest="rights_command", metavar="SUBCOMMAND")

  validate = sub.add_parser("validate", help="validate a JSON Lines / CSV rights records file")
  validate.add_argument("file", help="records file (.jsonl or .csv)")
  validate.add_argument("--format", choices=("jsonl", "csv"), default=None, help="override the suffix")
  validate.add_argument("--json", action="store_true", help="print the report as JSON")
  validate.add_argument("--allow-empty", action="store_true", help="a file with no records is valid (else an error)")
  validate.set_defaults(target="govjax.commands.rights:run_validate")

  summary = sub.add_parser("summary", help="counts by licence and treatment under a policy")
  source = summary.add_mutually_exclusive_group()
  source.add_argument("--records", default=None, help="records file (.jsonl or .csv)")
  source.add_argument("--scenario", default=None, choices=("default", "real"),
                      help="records generated for the prepared chorales (default: --scenario default)")
  summary.add_argument("--policy", default="default",
                       help="'default', 'default-strict-encodings' or a .json/.py policy file")
  summary.add_argument("--num-groups", type=int, default=None,
                       help="model depth groups L = num_layers + 2 (default: the default model's)")
  summary.add_argument("--seed", type=int, default=0, help="scenario seed")
  summary.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
  summary.add_argument("--include-structural", action="store_true", help=STRUCTURAL_HELP)
  summary.add_argument("--json", action="store_true", help="print the summary and exclusions as JSON")
  summary.set_defaults(target="govjax.commands.rights:run_summary")

  scenario = sub.add_parser("scenario", help="write the default simulated scenario for the prepared chorales")
  scenario.add_argument("--out", required=True, help="output file (.jsonl or .csv)")
  scenario.add_argument("--seed", type=int, default=0, help="scenario seed")
  scenario.add_argument("--kind", choices=("default", "real"), default="default",
                        help="'default' (simulated) or 'real' (the works' actual metadata)")
  scenario.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
  scenario.add_argument("--include-structural", action="store_true", help=STRUCTURAL_HELP)
  scenario.set_defaults(target="govjax.commands.rights:run_scenario")

  policy = sub.add_parser("policy", help="print (or write) the default policy as JSON")
  policy.add_argument("--out", default=None, help="write to this file instead of printing")
  policy.add_argument("--strict-encodings", action="store_true",
                      help="also restrict works whose encoding licence is restrictive or unknown")
  policy.set_defaults(target="govjax.commands.rights:run_policy")

  parser.set_defaults(help_parser=parser)


def add_sample(subparsers) -> None:
  parser = subparsers.add_parser("sample", help="sample chorales from a trained run (MIDI, MusicXML)")
  parser.add_argument("--workdir", required=True, help="run directory written by `govjax train`")
  parser.add_argument("--out", required=True, help="output MIDI path (numbered when --num > 1)")
  parser.add_argument("--num", type=int, default=1, help="number of samples")
  parser.add_argument("--frames", type=int, default=64,
                      help="frames (16th notes) per sample, prompt included; any length (past the context the model "
                           "continues from a sliding window)")
  parser.add_argument("--prompt-frames", type=int, default=4, help="opening frames of a held-out work as prompt")
  parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature >= 0 (0 = greedy)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--musicxml", action="store_true", help="also write MusicXML next to each MIDI file")
  parser.set_defaults(target="govjax.commands.sample:run")


def add_study(subparsers) -> None:
  parser = subparsers.add_parser("study", help="run a governance study: train methods, audit, trace, report")
  parser.add_argument("--config", required=True, help="study config file defining get_study()")
  parser.add_argument("--out", required=True, help="output directory (runs resume when already there)")
  parser.add_argument("--data-dir", default=None, help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.set_defaults(target="govjax.commands.study:run")


def add_trace(subparsers) -> None:
  parser = subparsers.add_parser("trace", help="trace a generated output to its influential training works")
  parser.add_argument("--workdir", required=True, help="run directory with an index (`govjax index`)")
  parser.add_argument("--input", required=True, help="generated .mid / .musicxml file or .npy token array")
  parser.add_argument("--top", type=int, default=10, help="number of works listed")
  parser.add_argument("--aggregate", default="sum", choices=("sum", "mean", "max"),
                      help="per-work aggregation of example scores")
  parser.add_argument("--json", action="store_true", help="print the lineage JSON")
  parser.set_defaults(target="govjax.commands.trace:run")


def add_train(subparsers) -> None:
  parser = subparsers.add_parser("train", help="train (or resume) a model from a Python config file")
  parser.add_argument("--config", required=True, help="experiments/configs/*.py defining get_config()")
  parser.add_argument("--workdir", required=True, help="run directory; an existing run is resumed")
  parser.add_argument("--data-dir", default=None, help="prepared data (default: $GOVJAX_DATA_DIR or ~/.cache)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field, e.g. --set num_steps=50 --set model.width=64")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  dist = parser.add_argument_group("distributed (data-parallel over all devices of all processes)")
  dist.add_argument("--distributed", action="store_true",
                    help="join a jax.distributed job and train data-parallel on a mesh of all its devices")
  dist.add_argument("--coordinator", default=None, help="host:port of process 0 (default $GOVJAX_COORDINATOR)")
  dist.add_argument("--num-processes", type=int, default=None, help="default $GOVJAX_NUM_PROCESSES")
  dist.add_argument("--process-id", type=int, default=None, help="default $GOVJAX_PROCESS_ID")
  dist.add_argument("--data-parallel", action="store_true",
                    help="train data-parallel on this process's devices (no jax.distributed)")
  parser.set_defaults(target="govjax.commands.train:run")


# ------------------------------------------------------------------------------------------------ benchmarks


def _bench_routing(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--quick", action="store_true", help="small model and batch (smoke run)")
  parser.add_argument("--batch", type=int, default=None, help="batch size (default 32; 8 with --quick)")
  parser.add_argument("--repeats", type=int, default=7, help="timed calls per step kind (median reported)")
  parser.add_argument("--microbatch", type=int, default=8, help="rows per per-example chunk of the exact path")
  parser.add_argument("--seed", type=int, default=0, help="seed for the batch and masks")


def _bench_probe(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--quick", action="store_true", help="small overhead model and a shorter AUC run")
  parser.add_argument("--overhead-steps", type=int, default=20, help="timed steps per variant")
  parser.add_argument("--models", type=int, default=16, help="half-subset models for the counterfactual labels")
  parser.add_argument("--pool-works", type=int, default=64, help="songs split into halves (two windows each)")
  parser.add_argument("--steps", type=int, default=240, help="training steps per model (epochs of equal frequency)")
  parser.add_argument("--signal", default="memorization_gap", choices=PROBE_SIGNALS, help="the probe's signal")
  parser.add_argument("--layer", type=int, default=0, help="hidden state of the representation entropy (0 = input)")
  parser.add_argument("--uncentred", action=argparse.BooleanOptionalAction, default=True,
                      help="uncentred representation entropy (--no-uncentred: centred)")
  parser.add_argument("--ema", type=float, default=0.9,
                      help="the probe's EMA weight over an example's sightings (0 = the last sighting only)")
  parser.add_argument("--direction", default="high", choices=PROBE_DIRECTIONS,
                      help="which side of the held-out distribution counts as memorized")
  parser.add_argument("--calibrate-every", type=int, default=8,
                      help="steps between the probe's calibrations on the never-trained songs")
  parser.add_argument("--seed", type=int, default=6,
                      help="first data seed (seeds 0-2 chose the probe's design, 3-5 tested the root gap; 6 onwards "
                           "are fresh)")
  parser.add_argument("--data-seeds", type=int, default=3, help="data seeds, pooled (--quick: one)")
  parser.add_argument("--margin", type=float, default=0.5,
                      help="the memorization gap's margin: counterfactual memorization (nats per token) it flags")
  parser.add_argument("--flag-steps", type=lambda text: tuple(int(v) for v in text.split(",")),
                      default=(48, 56, 64, 80, 240),
                      help="comma-separated steps at which the flags are compared with counterfactual memorization")
  parser.add_argument("--reference-order", type=int, default=4,
                      help="order of the probe's n-gram reference (0: the root-loss gap alone)")


def _bench_provenance(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--works", type=int, default=40, help="synthetic works in the canary run")
  parser.add_argument("--work-tokens", type=int, default=64, help="tokens per synthetic work")
  parser.add_argument("--context", type=int, default=32, help="model context (window length)")
  parser.add_argument("--steps", type=int, default=600,
                      help="training steps of the canary run (600: the model reproduces its canaries)")
  parser.add_argument("--k", type=int, default=512, help="projection dimension")
  parser.add_argument("--digits-epochs", type=int, default=20, help="epochs of the digits classifier")
  parser.add_argument("--noise", type=float, default=0.1, help="fraction of corrupted digit labels")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--prompt-tokens", type=int, default=8,
                      help="tokens of a canary's opening given as the prompt of the generated queries")
  parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the generated queries")
  parser.add_argument("--perturb-fractions", default="0.1,0.25",
                      help="comma-separated fractions of tokens changed in the perturbed-copy queries")
  parser.add_argument("--workdir", default=None, help="keep the canary run here (default: a temp dir)")


def _bench_lookup(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--max-works", type=int, default=None,
                      help="at most this many corpus works (default: all that parse to 4 voices)")
  parser.add_argument("--holdout-fraction", type=float, default=0.5, help="works kept out of the manifest")
  parser.add_argument("--edits", type=int, default=3, help="notes changed by the 'edit' transformation")
  parser.add_argument("--seed", type=int, default=0, help="seed for sampling, splits and transformations")
  parser.add_argument("--workers", type=int, default=2, help="parsing processes")
  parser.add_argument("--copy-threshold", type=float, default=0.5, help="music near-copy coverage threshold")
  parser.add_argument("--partial-threshold", type=float, default=0.8, help="music partial-copy coverage threshold")
  parser.add_argument("--melody-threshold", type=float, default=0.62, help="same-tune alignment threshold")
  parser.add_argument("--one-voice-threshold", type=float, default=0.7,
                      help="minimum tune score of any music answer between one-voice works")
  parser.add_argument("--other-composers", default="palestrina",
                      help="comma-separated music21 corpus composers whose four-voice works are extra distinct-work "
                           "queries against the Bach manifest ('' for none)")
  parser.add_argument("--max-other-works", type=int, default=None, help="at most this many of those works")
  parser.add_argument("--distinct-works", type=int, default=0,
                      help="also query this many never-documented Essen folk songs (and every chorale, leave-one-out) "
                           "against a manifest of as many other songs and the chorales (govjax.bench.lookup_distinct)")
  parser.add_argument("--settings", type=int, default=0,
                      help="also query this many four-voice settings of Essen tunes as distinct works against a "
                           "manifest of as many other settings and the chorales, plus re-used and re-set ones "
                           "(govjax.bench.lookup_settings)")
  parser.add_argument("--settings-held-out", default="",
                      help="comma-separated held-out one-voice music21 corpus folders whose every tune is set for four "
                           "voices and queried in the --settings measurement (e.g. oneills1850,ryansMammoth)")
  parser.add_argument("--settings-reused", type=int, default=300,
                      help="documented settings queried re-used (one inner line re-written) and set again")
  parser.add_argument("--distinct-only", action="store_true",
                      help="only the measurements at scale (--distinct-works, --settings)")
  parser.add_argument("--distinct-collection", default="essenFolksong",
                      help="music21 corpus folder of one-voice ABC tunes for --distinct-works (essenFolksong: the "
                           "development data; e.g. oneills1850 or ryansMammoth: held out)")
  parser.add_argument("--extra-query-collections", default="",
                      help="comma-separated held-out music21 corpus folders of one-voice ABC tunes whose every tune "
                           "is also queried in the --distinct-works measurement (e.g. ryansMammoth,airdsAirs)")
  parser.add_argument("--max-chorales", type=int, default=None,
                      help="at most this many chorales in the --distinct-works measurement (default: all)")
  parser.add_argument("--cache-dir", default=None,
                      help="parsed-works cache of --distinct-works (default: ~/.cache/govjax/lookup_bench)")


def _bench_scaling(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--ladder", default="experiments/configs/ladder.py",
                      help="ladder config (LADDER, get_config(name), num_params(config))")
  parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts")
  parser.add_argument("--examples", type=int, default=100_000, help="examples in the probe's per-example state")
  parser.add_argument("--check-steps", type=int, default=3,
                      help="steps of the sharded == single-device check on 4 fake devices (0: skip)")
  parser.add_argument("--timing", action="store_true", help="also time the data-parallel step per device count")
  parser.add_argument("--steps", type=int, default=20, help="timed steps per device count (--timing)")
  parser.add_argument("--batch-size", type=int, default=32, help="global batch size (--timing)")
  parser.add_argument("--layers", type=int, default=2, help="model layers (--timing)")
  parser.add_argument("--width", type=int, default=64, help="model width (--timing)")
  parser.add_argument("--context", type=int, default=64, help="model context (--timing)")
  parser.add_argument("--platform", default="cpu", help="cpu (fake devices) or gpu/tpu (real devices; --timing)")


BENCHES = {
    "lookup": ("lookup bench: transformed copies found, distinct works not, time per query", _bench_lookup),
    "probe": ("probe bench: overhead of the memorization probe and its memorization AUC", _bench_probe),
    "provenance": ("provenance bench: canary tracing, mislabel detection, indexing throughput", _bench_provenance),
    "routing": ("routing bench: governed vs plain step time and exactness", _bench_routing),
    "scaling": ("scaling bench: per-device bytes of the size ladder, sharded == single device",
                _bench_scaling),
}


def add_bench(subparsers) -> None:
  parser = subparsers.add_parser("bench", help="run a benchmark (routing, probe, provenance, lookup, scaling)")
  sub = parser.add_subparsers(dest="bench_name", metavar="NAME")
  for name, (text, add_arguments) in BENCHES.items():
    bench_parser = sub.add_parser(name, help=text)
    bench_parser.add_argument("--json", action="store_true", help="print one JSON object")
    bench_parser.add_argument("--out", default=None, help="also write the JSON result to this file")
    add_arguments(bench_parser)
    bench_parser.set_defaults(target="govjax.commands.bench:run")
  parser.set_defaults(help_parser=parser)


COMMANDS = {
    "prepare": add_prepare, "train": add_train, "sample": add_sample, "audit": add_audit, "index": add_index,
    "trace": add_trace, "manifest": add_manifest, "lookup": add_lookup, "rights": add_rights, "study": add_study,
    "report": add_report, "bench": add_bench,
}
