"""`laionknn prepare subsets|queries|show`: raw LAION parts -> subsets, query sets, image lookup."""

from __future__ import annotations

import click

from laionknn.cli.common import console, print_table
from laionknn.cli.options import K, SEED, count, number


@click.group()
def prepare() -> None:
    """Build the challenge subsets from raw LAION parts and draw filtered query sets."""


@prepare.command("subsets")
@click.option("--parts", "parts_dir", required=True, type=click.Path(file_okay=False),
              help="Folder with img_emb_XXXX.npy (or .npz) and metadata_XXXX.parquet.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--subsets", default="10M=11,30M=33,100M=111", show_default=True,
              help="NAME=PARTS,...: subset NAME holds the first PARTS parts.")
@click.option("--first-part", default=1, show_default=True, type=count(min=0), help="Number of the first database part.")
@click.option("--chunk-rows", default=65536, show_default=True, type=count(),
              help="Rows read and written at a time (bounds memory).")
@click.option("--restart", is_flag=True, help="Discard a checkpoint and partial files and start over.")
@click.option("--keep-work", is_flag=True, help="Keep the staged per-part metadata after finishing.")
def subsets_cmd(parts_dir: str, out_dir: str, subsets: str, first_part: int, chunk_rows: int, restart: bool,
                keep_work: bool) -> None:
    """Stream raw parts into the subset files (NSFW rows removed), resumable after interruption."""
    from laionknn.prepare import prepare_subsets

    r = prepare_subsets(parts_dir, out_dir, subsets, first_part, chunk_rows=chunk_rows, restart=restart,
                        keep_work=keep_work)
    if r.resumed_from:
        console.print(f"resumed after {r.resumed_from} checkpointed parts")
    nsfw = sum(p["nsfw"] for p in r.parts)
    missing = sum(p["missing"] for p in r.parts)
    console.print(f"{len(r.parts)} parts, {r.rows_read:,} rows read, {r.rows_kept:,} kept, "
                  f"{nsfw:,} dropped as NSFW, {missing:,} dropped for a missing NSFW value", highlight=False)
    print_table(None, ["subset", "parts", "rows", "file", "metadata"],
                [[s["name"], s["parts"], f"{s['rows']:,}", s["path"], s["metadata"]] for s in r.subsets])


@prepare.command("queries")
@click.option("--source", required=True, help="Raw part (.npy/.npz) or HDF5 vector file/catalog name, not in the database.")
@click.option("--database", required=True, help="Database file or catalog name.")
@click.option("--n", "n", default=10_000, show_default=True, type=count(), help="Number of queries.")
@click.option("--rule", type=click.Choice(["2023", "2024"]), required=True, help="The organisers' filters to apply.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the candidate sample.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: workspace data/).")
@click.option("--k", "k", type=K, help="Gold-standard depth (default min(1000, database rows)).")
@click.option("--metric", help="Distance for filters and gold (default: cosine for 2023, dot for 2024).")
@click.option("--oversample", default=1.25, show_default=True, type=number(min=1),
              help="Candidates drawn per missing query, times the inverse pass rate.")
def queries_cmd(source: str, database: str, n: int, rule: str, seed: int, out_dir: str | None, k: int | None,
                metric: str | None, oversample: float) -> None:
    """Draw a seeded, filtered query set and write it with its exact gold standard."""
    from laionknn.prepare import select_queries

    r = select_queries(source, database, n, rule, seed=seed, out_dir=out_dir, k=k, metric=metric,
                       oversample=oversample)
    s = r.summary
    rows = [["candidates examined", s["candidates"]]]
    rows += [[f"removed: {name}", count] for name, count in s["removed"].items()]
    rows += [["passed, not needed", s["passed_unused"]], ["kept", s["kept"]]]
    print_table(f"rule {rule}, seed {seed}, {s['batches']} batch(es), metric {s['metric']}, k={s['k']}",
                ["", "candidates"], rows)
    console.print(f"queries: {r.queries_path}\ngold:    {r.gold_path}\nsummary: {r.summary_path}", highlight=False)


@prepare.command("show")
@click.option("--metadata", required=True, type=click.Path(dir_okay=False), help="A subset's .metadata.parquet.")
@click.option("--ids", required=True, help="Comma-separated database ids.")
@click.option("--one-based", is_flag=True, help="Ids are 1-based (as in official knns/result files).")
def show_cmd(metadata: str, ids: str, one_based: bool) -> None:
    """Show caption, url, license and origin of database ids (the images behind results)."""
    from laionknn.errors import UsageError
    from laionknn.prepare import lookup

    try:
        wanted = [int(t) - (1 if one_based else 0) for t in ids.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--ids {ids!r}: expected comma-separated integers, e.g. 0,17,42") from None
    rows = lookup(metadata, wanted, ["caption", "url", "license", "NSFW", "part", "row"], id_base=int(one_based))
    print_table(None, ["id", "part", "row", "NSFW", "license", "url", "caption"],
                [[r["id"], r["part"], r["row"], r["NSFW"], r["license"], r["url"], r["caption"]] for r in rows])
