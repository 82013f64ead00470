"""``fewshot index``: build a large vector index from an embeddings file, show it, search it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fewshot.cli._common import (
    ForceOpt,
    check_output,
    handle_errors,
    info,
    output_name,
)

app = typer.Typer(
    help="Large vector indexes (FAISS IVF / IVF-PQ) over an embeddings file, memory-mapped "
    "when searched.",
    no_args_is_help=True,
)

IdsOpt = Annotated[
    Path | None,
    typer.Option("--ids", help="JSON file of the row ids (.npy/.safetensors).",
                 show_default="the .ids.json fewshot embed writes beside the file"),
]
VectorFieldOpt = Annotated[
    str | None,
    typer.Option("--vector-field", help="Parquet: the embedding column.",
                 show_default="'embedding', else the only list-of-floats column"),
]
IdFieldOpt = Annotated[str, typer.Option("--id-field", help="Parquet: the id column.")]
NprobeOpt = Annotated[
    int | None,
    typer.Option("--nprobe", min=1, help="IVF lists searched per query.",
                 show_default="the build's, chosen to reach --target-recall"),
]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _describe(m: dict[str, Any]) -> str:
    shape = f"{m['count']:,} x {m['dim']} {m['kind']}"
    if m["kind"] != "flat":
        shape += f", nlist {m['nlist']}, nprobe {m['nprobe']}"
    if m.get("pq"):
        shape += f", PQ {m['pq']['m']}x{m['pq']['nbits']} bits"
    r = m["recall"]
    recall = ("recall@10 1.0 (exact search)" if r.get("exact") else
              f"recall@{r['k']} {r['value']:.4f} against exact search on {r['queries']} "
              f"pool rows (target {r['target']})")
    return f"{shape}; {recall}"


@app.command("build", no_args_is_help=True)
@handle_errors
def build(
    pool: Annotated[
        Path, typer.Argument(metavar="POOL", help="Embeddings: .npy, .safetensors (as fewshot "
                             "embed writes them, ids beside) or .parquet.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Index folder to write.")],
    kind: Annotated[
        str, typer.Option("--kind", help="auto, flat, ivf-flat or ivf-pq. auto: flat below "
                          "50k vectors, ivf-flat while the vectors fit in --max-memory, "
                          "ivf-pq above.")
    ] = "auto",
    nlist: Annotated[
        int | None, typer.Option("--nlist", min=1, help="IVF lists.",
                                 show_default="4 x sqrt(count)")
    ] = None,
    nprobe: NprobeOpt = None,
    target_recall: Annotated[
        float, typer.Option("--target-recall", min=0.0, max=1.0,
                            help="Recall@10 the default nprobe is chosen to reach.")
    ] = 0.95,
    max_memory: Annotated[
        float, typer.Option("--max-memory", min=0.001,
                            help="GB the index may take in memory while built (above it, "
                            "IVF-PQ codes sized to fit).")
    ] = 4.0,
    ids: IdsOpt = None,
    vector_field: VectorFieldOpt = None,
    id_field: IdFieldOpt = "id",
    gpu: Annotated[
        bool | None, typer.Option("--gpu/--no-gpu", help="Train and add on the GPU (needs "
                                  "fewshot[gpu]).", show_default="when faiss sees a GPU")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the samples.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Build an index of POOL into a folder; reports recall@10 against exact search."""
    from fewshot.index import FILES, build_index

    check_output(output, force, folder_of=FILES, inputs={"POOL": pool, "--ids": ids})
    manifest = build_index(
        pool, output, kind=kind, nlist=nlist, nprobe=nprobe, target_recall=target_recall,
        max_memory=int(max_memory * 2**30), ids=ids, vector_field=vector_field,
        id_field=id_field, gpu=gpu, seed=seed, overwrite=force,
    )
    gpu_note = " on the GPU" if manifest["build"]["gpu"] else ""
    info(f"wrote {output}: {_describe(manifest)}; built in "
         f"{manifest['build']['seconds']:.1f} s{gpu_note}")


@app.command("info", no_args_is_help=True)
@handle_errors
def show(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Index folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="The manifest as JSON.")] = False,
) -> None:
    """What an index folder holds: kind, size, settings and the recall measured."""
    import json

    from fewshot.index import index_info

    m = index_info(folder)
    if as_json:
        typer.echo(json.dumps(m, indent=1))
        return
    typer.echo(f"{folder}: {_describe(m)}")
    files = ", ".join(f"{name} {_size(n)}" for name, n in m["bytes"].items())
    enc = (m.get("encoder") or {}).get("encoder")
    typer.echo(f"files: {files}" + (f"; embedded with {enc}" if enc else ""))


@app.command("search", no_args_is_help=True)
@handle_errors
def search(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Index folder.")],
    queries: Annotated[
        Path, typer.Argument(metavar="QUERIES", help="Query embeddings (.npy, .safetensors, "
                             ".parquet), from the pool's encoder.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output .jsonl or .parquet; - for stdout.")
    ] = Path("-"),
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Neighbours per query.")] = 10,
    nprobe: NprobeOpt = None,
    ids: IdsOpt = None,
    vector_field: VectorFieldOpt = None,
    id_field: IdFieldOpt = "id",
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="jsonl or parquet: the format of --output - (stdout). "
                     "A file is written in the format its extension names.",
                     show_default="jsonl on stdout"),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """The K nearest pool items of each query, best first, with cosine scores."""
    from fewshot.data.writers import row_format, write_rows
    from fewshot.index import search_index

    row_format(output, (".jsonl", ".parquet"), name="--output", fmt=fmt)
    check_output(output, force, inputs={"DIR": folder, "QUERIES": queries, "--ids": ids})
    rows = search_index(folder, queries, k, nprobe=nprobe, ids=ids, vector_field=vector_field,
                        id_field=id_field)
    write_rows(output, rows, fmt=fmt)
    info(f"wrote the {k} nearest of each of {len(rows)} queries to {output_name(output)}")
