"""Bad input to every subcommand: a one-line error naming the file and the problem, exit 2,
no partial output, and never a user's file removed or overwritten."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gene_dag.cli import main
from gene_dag.io import OUTDIR_MARKER


def counts_adata(n_cells=(60, 50), n_genes=12, seed=0, genes=None):
    """Poisson counts in groups A, B (sizes n_cells), genes G00.. (or ``genes``)."""
    rng = np.random.default_rng(seed)
    n = sum(n_cells)
    X = rng.poisson(3.0, size=(n, n_genes)).astype(np.float32)
    obs = pd.DataFrame(
        {"tissue": pd.Categorical(np.repeat(["A", "B"][: len(n_cells)], n_cells))}, index=[f"c{i}" for i in range(n)]
    )
    var = pd.DataFrame(index=genes if genes is not None else [f"G{j:02d}" for j in range(n_genes)])
    return anndata.AnnData(X=sp.csr_matrix(X), obs=obs, var=var)


def fails(capsys, argv, *needles):
    """Run ``gene-dag ARGV``: exit 2 and one stderr line holding every needle; returns that line."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1, err
    for needle in needles:
        assert str(needle) in err[0], err[0]
    return err[0]


def snapshot(directory):
    """Every file under ``directory`` with its bytes."""
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- preprocess --outdir


def preprocess_args(data, outdir, manifest):
    return [
        "preprocess",
        data,
        "--outdir",
        outdir,
        "--manifest",
        manifest,
        "--groupby",
        "tissue",
        "--min-group-size",
        "20",
    ]


def test_preprocess_never_removes_a_directory_it_did_not_write(tmp_path, capsys):
    users = tmp_path / "mine"
    users.mkdir()
    counts_adata().write_h5ad(users / "data.h5ad")
    (users / "notes.txt").write_text("keep me\n")
    before = snapshot(users)
    fails(capsys, preprocess_args(users / "data.h5ad", users, tmp_path / "groups.tsv"), str(users), "input")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me too\n")
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    fails(
        capsys,
        preprocess_args(tmp_path / "data.h5ad", tmp_path / "other", tmp_path / "groups.tsv"),
        str(tmp_path / "other"),
        "not empty",
        OUTDIR_MARKER,
        "nothing was removed",
    )
    assert snapshot(users) == before
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me too\n"
    assert not (tmp_path / "groups.tsv").exists()


def test_preprocess_outdir_dot_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    fails(capsys, preprocess_args("data.h5ad", ".", "groups.tsv"), "current directory")
    assert snapshot(tmp_path) == before


def test_preprocess_replaces_only_its_own_directory(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    out = tmp_path / "pre"
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert (out / OUTDIR_MARKER).is_file() and {"A.h5ad", "B.h5ad"} <= {p.name for p in out.iterdir()}
    (out / "stale.h5ad").write_text("from an earlier run")
    counts_adata(n_cells=(60, 10)).write_h5ad(tmp_path / "data.h5ad")  # B is now skipped
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTDIR_MARKER, "A.h5ad"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad", "g.tsv", "pre"]  # no temporaries left
    # a sibling whose name the old code used for its temporary directory is the user's: kept
    (tmp_path / ".pre.tmp").mkdir()
    (tmp_path / ".pre.tmp" / "x.txt").write_text("mine")
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    assert (tmp_path / ".pre.tmp" / "x.txt").read_text() == "mine"


def test_preprocess_an_empty_directory_is_used(tmp_path):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    (tmp_path / "pre").mkdir()
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path / "g.tsv")]) == 0
    assert (tmp_path / "pre" / "A.h5ad").is_file()


def test_preprocess_input_inside_its_own_old_outdir_is_refused(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    out = tmp_path / "pre"
    assert main([str(a) for a in preprocess_args(tmp_path / "data.h5ad", out, tmp_path / "g.tsv")]) == 0
    before = snapshot(out)
    fails(capsys, preprocess_args(out / "A.h5ad", out, tmp_path / "g2.tsv"), "holds the input")
    assert snapshot(out) == before


def test_preprocess_outputs_that_would_replace_the_input_or_are_not_directories(tmp_path, capsys):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    before = snapshot(tmp_path)
    fails(
        capsys,
        preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path / "data.h5ad"),
        "data.h5ad",
        "replace the input",
    )
    fails(
        capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "data.h5ad", tmp_path / "g.tsv"), "not a directory"
    )
    fails(
        capsys,
        preprocess_args(tmp_path / "data.h5ad", tmp_path / "data.h5ad" / "sub", tmp_path / "g.tsv"),
        "not a directory",
    )
    fails(capsys, preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path), "is a directory")
    fails(
        capsys,
        preprocess_args(tmp_path / "data.h5ad", tmp_path / "pre", tmp_path / "pre" / "g.tsv"),
        "lies inside --outdir",
    )
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- numbers (NaN, Inf, ranges)


@pytest.fixture
def data(tmp_path):
    counts_adata().write_h5ad(tmp_path / "data.h5ad")
    return tmp_path / "data.h5ad"


@pytest.mark.parametrize(
    "extra, option, problem",
    [
        (["--target-sum", "nan"], "--target-sum", "not a finite number"),
        (["--target-sum", "-1"], "--target-sum", "must be >"),
        (["--max-value", "inf"], "--max-value", "not a finite number"),
        (["--min-group-size", "0"], "--min-group-size", "must be >= 1"),
        (["--min-cells", "-3"], "--min-cells", "must be >= 0"),
    ],
)
def test_preprocess_numbers_are_checked_before_any_work(data, capsys, extra, option, problem):
    out = data.parent / "pre"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in preprocess_args(data, out, data.parent / "g.tsv")] + extra)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and problem in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, option, problem",
    [
        (["simulate", "--edges-per-node", "nan"], "--edges-per-node", "not a finite number"),
        (["simulate", "--noise-scale", "inf"], "--noise-scale", "not a finite number"),
        (["simulate", "--w-range", "0.5", "nan"], "--w-range", "not a finite number"),
        (["simulate", "--regulator-parents=-inf"], "--regulator-parents", "not a finite number"),
        (["simulate", "--target-parents", "0.5"], "--target-parents", "must be >= 1"),
        (["simulate", "--genes", "1"], "--genes", "must be >= 2"),
        (["simulate", "--seed", str(2**70)], "--seed", "must be <="),
        (["select", "IN.h5ad", "--n-top-genes", "0"], "--n-top-genes", "must be >= 1"),
    ],
)
def test_numbers_of_every_subcommand_are_checked(tmp_path, capsys, argv, option, problem):
    argv = [a.replace("IN.h5ad", str(tmp_path / "in.h5ad")) for a in argv] + ["--out", str(tmp_path / "o.h5ad")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and problem in err, err
    assert not (tmp_path / "o.h5ad").exists()


def test_simulate_weight_range_upside_down(tmp_path, capsys):
    fails(capsys, ["simulate", "--w-range", "2", "1", "--out", tmp_path / "o.h5ad"], "--w-range", "LO must be <= HI")
    assert not (tmp_path / "o.h5ad").exists()


# ----------------------------------------------------------------------------- text encodings


def test_a_byte_order_mark_does_not_drop_the_first_name(tmp_path):
    from gene_dag.io import read_gene_list
    from gene_dag.prior import read_edge_prior, read_regulators

    (tmp_path / "regs.txt").write_bytes("\ufeffGATA1\nSPI1\n".encode())
    assert read_regulators(tmp_path / "regs.txt") == ["GATA1", "SPI1"]
    assert read_gene_list(tmp_path / "regs.txt") == ["GATA1", "SPI1"]
    (tmp_path / "edges.tsv").write_bytes("\ufeffsource\ttarget\ttype\nGATA1\tSPI1\tforbidden\n".encode())
    table = read_edge_prior(tmp_path / "edges.tsv")
    assert table[["source", "target", "type"]].values.tolist() == [["GATA1", "SPI1", "forbidden"]]


@pytest.mark.parametrize("kind", ["regulators", "genes", "edges"])
def test_a_latin1_text_input_is_one_line_naming_the_file_and_line(tmp_path, kind):
    from gene_dag.errors import InputError
    from gene_dag.io import read_gene_list
    from gene_dag.prior import read_edge_prior, read_regulators

    text = {
        "regulators": "# TFs\nGATA1\nCAFÉ1\n",
        "genes": "# genes\nGATA1\nCAFÉ1\n",
        "edges": "# prior\nsource\ttarget\ttype\nCAFÉ1\tGATA1\tforbidden\n",
    }[kind]
    path = tmp_path / "latin1.txt"
    path.write_bytes(text.encode("latin-1"))
    reader = {"regulators": read_regulators, "genes": read_gene_list, "edges": read_edge_prior}[kind]
    with pytest.raises(InputError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 3: not UTF-8") and "\n" not in message, message


def test_evaluate_and_export_read_text_inputs_as_utf8(tmp_path, capsys):
    net = network_adata()
    net.write_h5ad(tmp_path / "net.h5ad")
    (tmp_path / "truth.tsv").write_bytes("\ufeffsource\ttarget\nG00\tG01\n".encode())
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "net.h5ad"),
                "--truth",
                str(tmp_path / "truth.tsv"),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert '"n_true": 1' in (tmp_path / "m.json").read_text()
    (tmp_path / "truth.tsv").write_bytes("source\ttarget\nG00\tG01\nCAFÉ\tG02\n".encode("latin-1"))
    fails(
        capsys,
        ["evaluate", tmp_path / "net.h5ad", "--truth", tmp_path / "truth.tsv"],
        f"{tmp_path / 'truth.tsv'}: line 3: not UTF-8",
    )
    (tmp_path / "report.json").write_bytes('\ufeff{"n_regulators": 3}'.encode())
    assert (
        main(
            [
                "export",
                str(tmp_path / "net.h5ad"),
                "--summary",
                str(tmp_path / "s.json"),
                "--prior-report",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    assert '"n_regulators": 3' in (tmp_path / "s.json").read_text()


# ----------------------------------------------------------------------------- contradictory priors

HEADER = "# known edges\nsource\ttarget\ttype\tweight\n"


@pytest.mark.parametrize(
    "rows, message",
    [
        ("A\tB\tpositive\n\nA\tB\tnegative\n", "line 5: edge A -> B is both positive (line 3) and negative"),
        ("A\tB\trequired\nA\tB\tforbidden\n", "line 4: edge A -> B is both required (line 3) and forbidden"),
        (
            "A\tB\tforbidden\n# signed\nA\tB\tnegative\t0.5\n",
            "line 5: edge A -> B is both forbidden (line 3) and negative",
        ),
        ("A\tB\tforbidden\t0.5\n", "line 3: edge A -> B is forbidden, so a weight (0.5) has no meaning"),
        (
            "A\tB\tpositive\t0.5\nC\tD\tpositive\nA\tB\trequired\t2\n",
            "line 5: edge A -> B has weight 2 here but 0.5 on line 3",
        ),
    ],
    ids=["positive-negative", "required-forbidden", "forbidden-sign", "forbidden-weight", "two-weights"],
)
def test_contradictory_prior_rows_name_the_file_and_line(tmp_path, capsys, rows, message):
    path = tmp_path / "edges.tsv"
    path.write_text(HEADER + rows)
    network_adata().write_h5ad(tmp_path / "net.h5ad")
    fails(
        capsys,
        [
            "prior",
            tmp_path / "net.h5ad",
            "--prior",
            path,
            "--out-regulators",
            tmp_path / "r.txt",
            "--out-edges",
            tmp_path / "e.tsv",
            "--report",
            tmp_path / "r.json",
        ],
        f"{path}: {message}",
    )
    assert not (tmp_path / "r.txt").exists() and not (tmp_path / "e.tsv").exists()


def test_compatible_and_repeated_prior_rows_are_accepted_once(tmp_path):
    from gene_dag.prior import load_mask

    path = tmp_path / "edges.tsv"
    path.write_text(
        HEADER + "A\tB\trequired\nA\tB\tpositive\nA\tC\tnegative\t0.5\nA\tC\tnegative\t0.5\nA\tC\tnegative\n"
    )
    mask = load_mask(["A", "B", "C"], prior_path=path)
    assert mask.required[0, 1] and mask.sign[0, 1] == 1 and mask.sign[0, 2] == -1
    assert mask.penalty_block()[0, 2] == 0.5  # a repeated row does not add its weight twice


# ----------------------------------------------------------------------------- names that break the outputs


def network_adata(genes=("G00", "G01", "G02", "G03")):
    adata = counts_adata(n_cells=(20,), n_genes=len(genes), genes=list(genes))
    W = np.zeros((len(genes), len(genes)), dtype=np.float32)
    W[0, 1] = W[1, 2] = 0.5
    adata.varp["gene_dag"] = sp.csr_matrix(W)
    adata.uns["gene_dag"] = {"run": {"converged": True}}
    return adata


@pytest.mark.parametrize("bad", ["G\t01", "G\n01", "G\x0101", "G\x7f01"])
def test_gene_names_with_control_characters_are_refused_at_input(tmp_path, capsys, bad):
    net = network_adata(genes=("G00", bad, "G02", "G03"))
    net.write_h5ad(tmp_path / "net.h5ad")
    fails(
        capsys,
        ["export", tmp_path / "net.h5ad", "--graphml", tmp_path / "n.graphml", "--edges", tmp_path / "e.tsv"],
        str(tmp_path / "net.h5ad"),
        repr(bad),
        "control character",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.h5ad"]
    fails(capsys, preprocess_args(tmp_path / "net.h5ad", tmp_path / "pre", tmp_path / "g.tsv"), repr(bad))
    from gene_dag.errors import InputError
    from gene_dag.export import export_network

    with pytest.raises(InputError, match="control character"):
        export_network(net, graphml=tmp_path / "n.graphml")
    assert not (tmp_path / "n.graphml").exists()


def test_prior_files_with_control_characters_name_the_line(tmp_path):
    from gene_dag.errors import InputError
    from gene_dag.prior import read_edge_prior, read_regulators

    (tmp_path / "regs.txt").write_text("GATA1\nSP\x0bI1\n")
    with pytest.raises(InputError, match=r"regs\.txt: line 2: name 'SP\\x0bI1' holds the control character"):
        read_regulators(tmp_path / "regs.txt")
    (tmp_path / "edges.tsv").write_text("source\ttarget\ttype\nGATA1\tSP\x01I1\tforbidden\n")
    with pytest.raises(InputError, match=r"edges\.tsv: line 2: gene name 'SP\\x01I1'"):
        read_edge_prior(tmp_path / "edges.tsv")


# ----------------------------------------------------------------------------- unreadable .h5ad files


def subcommands(bad, tmp_path):
    """Every subcommand reading an .h5ad, with ``bad`` where that file goes."""
    good = tmp_path / "good.h5ad"
    network_adata().write_h5ad(good)
    out = tmp_path / "out"
    return {
        "select": ["select", bad, "--out", out / "s.h5ad"],
        "prior": [
            "prior",
            bad,
            "--out-regulators",
            out / "r.txt",
            "--out-edges",
            out / "e.tsv",
            "--report",
            out / "r.json",
        ],
        "export": ["export", bad, "--h5ad", out / "n.h5ad", "--edges", out / "e.tsv"],
        "evaluate": ["evaluate", bad, "--truth", good, "--truth-key", "gene_dag", "--out", out / "m.json"],
        "evaluate-truth": ["evaluate", good, "--truth", bad, "--out", out / "m.json"],
        "preprocess": preprocess_args(bad, out / "pre", out / "g.tsv"),
    }


@pytest.mark.parametrize("command", ["select", "prior", "export", "evaluate", "evaluate-truth", "preprocess"])
@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory", "empty"])
def test_every_subcommand_reports_a_bad_h5ad_in_one_line(tmp_path, capsys, command, kind):
    bad = tmp_path / "bad.h5ad"
    if kind == "garbage":
        bad.write_bytes(b"this is not an HDF5 file\n" * 10)
    elif kind == "truncated":
        network_adata().write_h5ad(tmp_path / "whole.h5ad")
        bad.write_bytes((tmp_path / "whole.h5ad").read_bytes()[:3000])
    elif kind == "directory":
        bad.mkdir()
    else:
        bad.write_bytes(b"")
    line = fails(capsys, subcommands(bad, tmp_path)[command], str(bad))
    assert "Traceback" not in line
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- too little data


def test_a_single_gene_says_so_naming_the_file(tmp_path, capsys):
    one = counts_adata(n_cells=(30,), n_genes=1)
    one.write_h5ad(tmp_path / "one.h5ad")
    fails(
        capsys,
        ["solve", tmp_path / "one.h5ad", "--out", tmp_path / "o.h5ad"],
        f"{tmp_path / 'one.h5ad'}: 1 gene: no possible edge",
    )
    fails(
        capsys, preprocess_args(tmp_path / "one.h5ad", tmp_path / "pre", tmp_path / "g.tsv"), "1 gene: no possible edge"
    )
    from gene_dag.errors import InputError
    from gene_dag.prior import build_mask

    with pytest.raises(InputError, match=r"^1 gene\(s\): no possible edge"):
        build_mask(["A"])


def test_one_cell_and_all_constant_genes(tmp_path, capsys):
    counts_adata(n_cells=(1,)).write_h5ad(tmp_path / "cell.h5ad")
    fails(
        capsys,
        preprocess_args(tmp_path / "cell.h5ad", tmp_path / "pre", tmp_path / "g.tsv"),
        str(tmp_path / "cell.h5ad"),
        "1 cell: no variance to learn from",
    )
    flat = counts_adata(n_cells=(30, 30))
    flat.X = sp.csr_matrix(np.ones(flat.shape, dtype=np.float32))
    flat.write_h5ad(tmp_path / "flat.h5ad")
    fails(
        capsys,
        preprocess_args(tmp_path / "flat.h5ad", tmp_path / "pre", tmp_path / "g.tsv"),
        str(tmp_path / "flat.h5ad"),
        "no group is left",
        "0 gene(s) vary within the group",
    )
    assert not (tmp_path / "pre").exists() and not (tmp_path / "g.tsv").exists()


# ----------------------------------------------------------------------------- empty and odd files, output paths


def test_empty_and_header_only_prior_files(tmp_path, caplog):
    from gene_dag.errors import InputError
    from gene_dag.io import read_gene_list
    from gene_dag.prior import read_edge_prior, read_regulators

    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    for reader, what in ((read_regulators, "regulator list"), (read_gene_list, "gene list")):
        with pytest.raises(InputError, match=rf"empty\.txt: {what} names no gene"):
            reader(tmp_path / "empty.txt")
    with pytest.raises(InputError, match=r"empty\.txt: the edge prior is empty"):
        read_edge_prior(tmp_path / "empty.txt")
    (tmp_path / "header.tsv").write_text("source\ttarget\ttype\n")
    with caplog.at_level("WARNING", logger="gene_dag.prior"):
        assert len(read_edge_prior(tmp_path / "header.tsv")) == 0
    assert any("header.tsv: the edge prior has no edge rows" in r.getMessage() for r in caplog.records)
    (tmp_path / "wide.tsv").write_text("source\ttarget\ttype\nA\tB\tforbidden\textra\n")
    with pytest.raises(InputError, match=r"wide\.tsv: line 2: 4 fields but the header has 3"):
        read_edge_prior(tmp_path / "wide.tsv")
    (tmp_path / "comma.tsv").write_text("source,target,type\nA,B,forbidden\n")
    with pytest.raises(InputError, match=r"comma\.tsv: line 1: the header lacks column"):
        read_edge_prior(tmp_path / "comma.tsv")
    for reader in (read_regulators, read_gene_list, read_edge_prior):
        with pytest.raises(InputError, match="is a directory"):
            reader(tmp_path)


def test_select_with_an_empty_gene_list_names_the_file(tmp_path, capsys, data):
    (tmp_path / "genes.txt").write_text("# none yet\n")
    fails(
        capsys,
        ["select", data, "--out", tmp_path / "s.h5ad", "--method", "list", "--genes", tmp_path / "genes.txt"],
        f"{tmp_path / 'genes.txt'}: gene list names no gene",
    )


def test_no_output_may_replace_an_input(tmp_path, capsys, data):
    network_adata().write_h5ad(tmp_path / "net.h5ad")
    (tmp_path / "regs.txt").write_text("G00\nG01\n")
    before = snapshot(tmp_path)
    net, regs = tmp_path / "net.h5ad", tmp_path / "regs.txt"
    for argv in (
        ["select", data, "--out", data],
        ["select", data, "--out", regs, "--regulators", regs],
        [
            "prior",
            net,
            "--regulators",
            regs,
            "--out-regulators",
            regs,
            "--out-edges",
            tmp_path / "e.tsv",
            "--report",
            tmp_path / "r.json",
        ],
        ["export", net, "--h5ad", net],
        ["evaluate", net, "--truth", net, "--truth-key", "gene_dag", "--out", net],
    ):
        fails(capsys, argv, "replace the input")
    fails(
        capsys,
        [
            "prior",
            net,
            "--out-regulators",
            tmp_path / "x",
            "--out-edges",
            tmp_path / "x",
            "--report",
            tmp_path / "r.json",
        ],
        "two different outputs",
    )
    (tmp_path / "link.h5ad").symlink_to(data)
    fails(capsys, ["select", data, "--out", tmp_path / "link.h5ad", "--method", "all"], "replace the input")
    before = snapshot(tmp_path)
    fails(capsys, ["simulate", "--out", tmp_path], "is a directory")
    fails(capsys, ["export", net, "--edges", regs / "e.tsv"], f"{regs} is not a directory")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- the workflow


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, key, value",
    [
        (lambda c: c["solver"].update(lambda1=float("nan")), "solver.lambda1", "nan"),
        (lambda c: c["solver"].update(max_time=float("inf")), "solver.max_time", "inf"),
        (lambda c: c["datasets"][0].update(target_sum=float("-inf")), "datasets[0].target_sum", "-inf"),
    ],
    ids=["lambda1-nan", "max_time-inf", "target_sum-minus-inf"],
)
def test_workflow_config_refuses_nan_and_infinities(tmp_path, edit, key, value):
    from test_workflow import edit_config, output_of, prepare, snakemake

    prepare(tmp_path)
    edit_config(tmp_path, edit)
    assert f": {value.replace('nan', '.nan').replace('inf', '.inf')}" in (tmp_path / "config.yaml").read_text()
    proc = snakemake(tmp_path, "--configfile", "config.yaml")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key {key}: must be a finite number, not {value}" in text, output_of(proc)
    assert "Job stats" not in text and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_workflow_prior_for_a_group_that_does_not_exist_stops_before_any_solve(tmp_path):
    from test_workflow import edit_config, jobs_run, output_of, prepare, snakemake

    prepare(tmp_path)
    edit_config(
        tmp_path,
        lambda c: c["datasets"][0]["priors"]["groups"].update(
            {"lungs": c["datasets"][0]["priors"]["groups"].pop("lung")}
        ),
    )
    proc = snakemake(tmp_path, "--configfile", "config.yaml")
    assert proc.returncode != 0, output_of(proc)
    text = proc.stdout + proc.stderr
    assert (
        "config key datasets[0].priors.groups: 'lungs' match(es) no group of dataset toy "
        "(groups found: 'liver', 'lung', 'tiny gland')"
    ) in text, output_of(proc)
    groups = tmp_path / "results/toy/groups"
    assert not groups.exists() or not list(groups.rglob("*.h5ad")), output_of(proc)  # no group job ran
    # the slug names a group as well, and fixing the key does not redo preprocess
    edit_config(
        tmp_path,
        lambda c: c["datasets"][0]["priors"]["groups"].update(
            {"tiny_gland": c["datasets"][0]["priors"]["groups"].pop("lungs")}
        ),
    )
    proc = snakemake(tmp_path, "--configfile", "config.yaml", "--dry-run")
    assert proc.returncode == 0 and "preprocess" not in jobs_run(proc), output_of(proc)


def test_expression_tables_bom_latin1_and_empty_gene_names(tmp_path):
    from gene_dag.errors import InputError
    from gene_dag.io import read_expression, validate_expression

    (tmp_path / "bom.csv").write_bytes("\ufeffcell,G1,G2\nc1,1,2\nc2,3,5\n".encode())
    assert list(read_expression(tmp_path / "bom.csv").var_names) == ["G1", "G2"]
    (tmp_path / "latin1.csv").write_bytes("cell,G1,G2\nc1,1,2\nCAFÉ,3,5\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1\.csv: line 3: not UTF-8"):
        read_expression(tmp_path / "latin1.csv")
    blank = counts_adata(n_cells=(5,), n_genes=3, genes=["G1", " ", "G3"])
    with pytest.raises(InputError, match=r"blank\.h5ad: an empty gene name \(gene 2\)"):
        validate_expression(blank, "blank.h5ad")


@pytest.mark.slow
@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["datasets"][0].update(max_value=10),
            "config key datasets[0].max_value: is only used with scale: true",
        ),
        (
            lambda c: c["datasets"][0].update(values="log", target_sum=1e4),
            "config key datasets[0].target_sum: is only used with values: counts",
        ),
        (
            lambda c: c["datasets"][0]["genes"].update(list="priors/regulators.txt"),
            "config key datasets[0].genes.list: is only used with genes.method: list",
        ),
        (
            lambda c: c["datasets"][0]["priors"].update(regulators="priors"),
            "config key datasets[0].priors.regulators: priors is a directory, not a file",
        ),
    ],
    ids=["max_value-without-scale", "target_sum-without-counts", "list-without-method-list", "directory"],
)
def test_workflow_config_keys_that_would_be_ignored_are_errors(tmp_path, edit, message):
    from test_workflow import edit_config, output_of, prepare, snakemake

    prepare(tmp_path)
    edit_config(tmp_path, edit)
    proc = snakemake(tmp_path, "--configfile", "config.yaml")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and message in text, output_of(proc)
    assert "Job stats" not in text and not (tmp_path / "results").exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, data):
    fails(
        capsys,
        ["select", data, "--out", "/proc/gene-dag-test/s.h5ad", "--method", "all"],
        "/proc/gene-dag-test/s.h5ad",
        "cannot",
    )
    unlabelled = counts_adata()
    unlabelled.obs["tissue"] = pd.Categorical([None] * unlabelled.n_obs, categories=["A"])
    unlabelled.write_h5ad(tmp_path / "nolabel.h5ad")
    fails(
        capsys,
        preprocess_args(tmp_path / "nolabel.h5ad", tmp_path / "pre", tmp_path / "g.tsv"),
        "no cell has a 'tissue' label",
    )


def test_export_and_evaluate_refuse_malformed_side_inputs(tmp_path, capsys):
    net = network_adata()
    net.write_h5ad(tmp_path / "net.h5ad")
    (tmp_path / "report.json").write_text("[1, 2]\n")
    fails(
        capsys,
        ["export", tmp_path / "net.h5ad", "--summary", tmp_path / "s.json", "--prior-report", tmp_path / "report.json"],
        f"{tmp_path / 'report.json'}: the prior report is a JSON list",
    )
    net.varp["gene_dag"] = sp.csr_matrix(np.where(net.varp["gene_dag"].toarray() > 0, np.nan, 0).astype(np.float32))
    net.write_h5ad(tmp_path / "nan.h5ad")
    (tmp_path / "truth.tsv").write_text("source\ttarget\nG00\tG01\n")
    fails(
        capsys,
        ["evaluate", tmp_path / "nan.h5ad", "--truth", tmp_path / "truth.tsv"],
        f"{tmp_path / 'nan.h5ad'}: varp['gene_dag'] holds NaN or infinite weights",
    )
    assert not (tmp_path / "s.json").exists()


def test_a_binary_file_given_as_a_text_input_says_what_it_is(tmp_path, data):
    import gzip

    from gene_dag.errors import InputError
    from gene_dag.prior import read_edge_prior, read_regulators

    (tmp_path / "regs.txt.gz").write_bytes(gzip.compress(b"GATA1\n"))
    with pytest.raises(InputError, match=r"regs\.txt\.gz: is gzip-compressed; decompress it"):
        read_regulators(tmp_path / "regs.txt.gz")
    with pytest.raises(
        InputError, match=r"data\.h5ad: is an HDF5 file \(\.h5ad\?\), but the edge prior must be plain text"
    ):
        read_edge_prior(data)


def test_an_empty_first_field_of_an_edge_prior_is_not_shifted_away(tmp_path):
    from gene_dag.errors import InputError
    from gene_dag.prior import read_edge_prior

    (tmp_path / "edges.tsv").write_text("source\ttarget\ttype\n\tGATA1\tforbidden\n")
    with pytest.raises(InputError, match=r"edges\.tsv: line 2: empty source or target"):
        read_edge_prior(tmp_path / "edges.tsv")
    (tmp_path / "crlf.tsv").write_bytes(b"source\ttarget\ttype\tweight\r\nA\tB\tpositive\t\r\nA\tC\tnegative\t0.5\r\n")
    table = read_edge_prior(tmp_path / "crlf.tsv")
    assert table.values.tolist() == [["A", "B", "positive", 1.0], ["A", "C", "negative", 0.5]]


def test_qc_or_selection_leaving_too_few_genes_names_the_file(tmp_path, capsys, data):
    fails(
        capsys,
        preprocess_args(data, tmp_path / "pre", tmp_path / "g.tsv") + ["--min-cells", "1000"],
        str(data),
        "QC (min_genes=0, min_cells=1000) left 110 cells x 0 genes",
    )
    assert not (tmp_path / "pre").exists()
    (tmp_path / "one.txt").write_text("G03\nNOT_A_GENE\n")
    fails(
        capsys,
        [
            "select",
            data,
            "--out",
            tmp_path / "s.h5ad",
            "--method",
            "list",
            "--genes",
            tmp_path / "one.txt",
            "--no-force",
        ],
        str(data),
        "gene selection kept 1 gene(s); a network needs at least 2",
    )
    assert not (tmp_path / "s.h5ad").exists()


def test_read_network_reads_an_edge_table_as_utf8(tmp_path):
    from gene_dag.errors import InputError
    from gene_dag.io import read_network

    (tmp_path / "edges.tsv").write_bytes("\ufeffsource\ttarget\tweight\nGATA1\tSPI1\t0.5\n".encode())
    assert list(read_network(tmp_path / "edges.tsv").edges) == [("GATA1", "SPI1")]
    (tmp_path / "edges.tsv").write_bytes("source\ttarget\tweight\nCAFÉ\tSPI1\t0.5\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"edges\.tsv: line 2: not UTF-8"):
        read_network(tmp_path / "edges.tsv")
