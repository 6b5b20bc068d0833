"""Backfill embedding on Ray actors against the local engine (shares the session's local Ray)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scale_fixtures import mlp_items

from embridge.core.errors import Cancelled, InputError
from embridge.core.models import load_model
from embridge.core.scale.backfill_embed import embed_dataset


def read_chunks(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    ids, vecs = [], []
    for file in sorted(folder.glob("chunk-*.parquet")):
        t = pq.read_table(file)
        col = t.column("vector").combine_chunks()
        ids.append(t.column("id").to_numpy())
        vecs.append(col.flatten().to_numpy().reshape(len(col), col.type.list_size))
    return np.concatenate(ids), np.concatenate(vecs)


@pytest.fixture
def model_and_items(tmp_path: Path) -> dict[str, Any]:
    return mlp_items(tmp_path, 700)


def test_ray_backfill_in_planner_order_equals_local(ray_cluster: Any, model_and_items: dict, tmp_path: Path) -> None:
    m = model_and_items
    order = np.random.default_rng(1).permutation(700)[:450] + 1000  # a partial backfill, planner's order
    progress: list[dict] = []
    ray_run = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "ray"), engine="ray", order=order,
                            chunk=100, on_progress=lambda d, t, info: progress.append(info))
    local = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "local"), order=order, chunk=100)
    assert ray_run.items == local.items == 450 and ray_run.chunks == 5
    r_ids, r_vec = read_chunks(tmp_path / "ray")
    l_ids, l_vec = read_chunks(tmp_path / "local")
    np.testing.assert_array_equal(r_ids, order)  # chunks follow the planner's order
    np.testing.assert_array_equal(l_ids, r_ids)
    np.testing.assert_allclose(r_vec, l_vec, atol=1e-6, rtol=0)
    direct = load_model(m["model"], "cpu").embed_batch(m["inputs"][order - 1000])
    np.testing.assert_allclose(r_vec, direct, atol=1e-6, rtol=0)
    assert progress[-1]["items"] == 450 and progress[-1]["items_per_s"] > 0 and progress[-1]["eta_s"] == 0


def test_backfill_resumes_by_chunk_and_refuses_bad_input(ray_cluster: Any, model_and_items: dict,
                                                         tmp_path: Path) -> None:
    m = model_and_items
    calls: list[int] = []
    with pytest.raises(Cancelled):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), chunk=200,
                      should_stop=lambda: calls.append(1) or len(calls) > 2)
    resumed = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), chunk=200, engine="ray")
    assert (resumed.skipped, resumed.written) == (2, 2)
    import embridge.core.scale.backfill_embed as backfill_embed

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished job started Ray")

    with pytest.MonkeyPatch.context() as patch:  # finished: the rerun skips every chunk without Ray
        patch.setattr(backfill_embed, "_on_ray", no_ray)
        again = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), chunk=200, engine="ray")
    assert (again.skipped, again.written, again.items) == (4, 0, 0)
    ids, _ = read_chunks(tmp_path / "out")
    np.testing.assert_array_equal(ids, np.arange(700) + 1000)
    # the finished job in other chunks is said to be complete, not stopped part way
    with pytest.raises(InputError, match=r"finished in chunks of 200 items; its output is complete"):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), chunk=100)
    # another model saved at the same path is another job: its vectors never join the first model's
    import torch

    from embridge.core.models.builtin import build_model, save_checkpoint

    with pytest.raises(Cancelled):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "swap"), chunk=200,
                      should_stop=lambda: calls.append(1) or len(calls) > 5)
    # the same job in other chunks: the option to change is named, with the value that resumes it
    with pytest.raises(InputError, match=r"in chunks of 200 items; run it again with --chunk 200 to resume it"):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "swap"), chunk=100)
    torch.manual_seed(5)
    config = {"input_dim": 8, "out_dim": 6}
    save_checkpoint(m["model"], build_model("mlp", config)[0], "mlp", config)
    with pytest.raises(InputError, match="holds the output of another embedding job"):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "swap"), chunk=200)
    with pytest.raises(InputError, match="1 id is not in the dataset"):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "o2"), order=np.array([5]))
    with pytest.raises(InputError, match="no 'text' column \\(columns: "):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "o3"), input_col="text")
    for source, target, says in ((f"parquet://{m['items']}?id=label", str(tmp_path / "o4"), "--from: .* 'id'"),
                                 (str(m["items"]), f"parquet://{tmp_path / 'o5'}?bogus=2", "--to: .* 'bogus'")):
        with pytest.raises(InputError, match=f"{says} \\(it takes no parameters here\\)"):  # ignored before
            embed_dataset(m["model"], source, target)
        assert not (tmp_path / "o4").exists() and not (tmp_path / "o5").exists()


def test_embed_dataset_command_on_ray(ray_cluster: Any, model_and_items: dict, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from embridge.core.cli.main import main

    m = model_and_items
    np.save(tmp_path / "order.npy", np.arange(1000, 1300)[::-1])
    assert main(["embed-dataset", "--model", str(m["model"]), "--from", f"parquet://{m['items']}",
                 "--to", f"parquet://{tmp_path / 'out'}", "--order", str(tmp_path / "order.npy"),
                 "--engine", "ray", "--chunk", "128", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["items"] == 300 and "items/s" in err
    ids, _ = read_chunks(tmp_path / "out")
    np.testing.assert_array_equal(ids, np.arange(1000, 1300)[::-1])


def test_cancel_on_ray_stops_the_pool_and_a_rerun_finishes(ray_cluster: Any, model_and_items: dict,
                                                           tmp_path: Path) -> None:
    m = model_and_items
    seen: list[int] = []
    with pytest.raises(Cancelled):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), engine="ray", chunk=50,
                      on_progress=lambda d, t, info: seen.append(d), should_stop=lambda: len(seen) >= 2)
    finished = len(list((tmp_path / "out").glob("chunk-*.parquet")))
    assert 2 <= finished <= 6  # the pool keeps one chunk per actor in flight; the rest never started
    time.sleep(2)  # a killed actor's process may outlive its task: nothing it does now may publish a chunk
    assert len(list((tmp_path / "out").glob("chunk-*.parquet"))) == finished
    rerun = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), engine="ray", chunk=50)
    assert rerun.skipped == finished and rerun.written == 14 - finished
    ids, _ = read_chunks(tmp_path / "out")
    np.testing.assert_array_equal(ids, np.arange(700) + 1000)
    # the finished job in other chunks is said to be complete, not stopped part way
    with pytest.raises(InputError, match=r"finished in chunks of 50 items; its output is complete"):
        embed_dataset(m["model"], str(m["items"]), str(tmp_path / "out"), chunk=100)


def test_killed_embedding_actor_is_restarted_and_output_unchanged(ray_cluster: Any, model_and_items: dict,
                                                                  tmp_path: Path) -> None:
    from scale_fixtures import WorkerKiller

    m = model_and_items
    killer = WorkerKiller("ChunkEmbedder.stage", timeout=120)  # an actor busy embedding a chunk
    killer.start()
    ray_run = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "ray"), engine="ray", chunk=50)
    killer.stop.set()
    killer.join()
    assert killer.killed is not None, "no embedding actor was seen running, so none was killed"
    local = embed_dataset(m["model"], str(m["items"]), str(tmp_path / "local"), chunk=50)
    assert ray_run.items == local.items == 700 and ray_run.written == ray_run.chunks == 14
    r_ids, r_vec = read_chunks(tmp_path / "ray")
    l_ids, l_vec = read_chunks(tmp_path / "local")
    np.testing.assert_array_equal(r_ids, l_ids)
    np.testing.assert_allclose(r_vec, l_vec, atol=1e-6, rtol=0)
    assert not list((tmp_path / "ray").glob(".*.tmp-*"))


def test_embed_dataset_takes_the_input_shape_a_conv_model_needs(ray_cluster: Any, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from scale_fixtures import write_items

    from embridge.core.cli.main import main
    from embridge.core.models.builtin import SmallCNNEmbedder

    torch.manual_seed(0)
    net = SmallCNNEmbedder(out_dim=6, in_channels=1, height=8, width=8, channels=[4, 4], num_classes=3).eval()
    model = tmp_path / "cnn.pt"
    with torch.no_grad():  # a TorchScript file does not say the image size its convolutions take
        torch.jit.save(torch.jit.trace(net, torch.zeros(2, 1, 8, 8)), str(model))
    images = np.random.default_rng(0).standard_normal((30, 64)).astype(np.float32)  # rows travel flattened
    write_items(tmp_path / "items", images, 2)
    args = ["embed-dataset", "--model", str(model), "--from", f"parquet://{tmp_path / 'items'}"]
    assert main([*args, "--to", f"parquet://{tmp_path / 'no'}"]) == 1
    assert "give it (--input-shape" in capsys.readouterr().err  # the option the message names exists
    # on Ray each actor's constructor failed instead (exit 3, a traceback per retry on stdout)
    assert main([*args, "--to", f"parquet://{tmp_path / 'no'}", "--engine", "ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give it (--input-shape" in err[0] and not (tmp_path / "no").exists()
    assert main([*args, "--to", f"parquet://{tmp_path / 'out'}", "--input-shape", "1,8,8"]) == 0
    ids, vectors = read_chunks(tmp_path / "out")
    with torch.no_grad():
        direct = net(torch.from_numpy(images.reshape(30, 1, 8, 8))).numpy()
    np.testing.assert_allclose(vectors, direct[ids - 1000], atol=1e-5)
    capsys.readouterr()
    # the same weights read at another shape are another job; a shape the rows cannot fill is one line
    assert main([*args, "--to", f"parquet://{tmp_path / 'out'}", "--input-shape", "1,4,16"]) == 1
    assert "holds the output of another embedding job" in capsys.readouterr().err
    assert main([*args, "--to", f"parquet://{tmp_path / 'nine'}", "--input-shape", "1,9,9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["embridge: error: --input-shape: 1x9x9 takes 81 values per item, but the column 'input' holds 64"]


def test_stating_the_shape_the_model_implies_is_the_same_job(model_and_items: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A rerun with ``--input-shape`` equal to what the checkpoint says (or without it after a run with it)
    resumes the job: every chunk is already done."""
    import json

    from embridge.core.cli.main import main

    m = model_and_items
    args = ["embed-dataset", "--model", str(m["model"]), "--from", f"parquet://{m['items']}",
            "--to", f"parquet://{tmp_path / 'out'}", "--chunk", "200", "--json"]
    for extra, written in (([], 4), (["--input-shape", "8"], 0), ([], 0)):
        assert main([*args, *extra]) == 0, capsys.readouterr().err
        out = json.loads(capsys.readouterr().out)
        assert out["written"] == written and out["skipped"] == 4 - written, (extra, out)
    assert main([*args[:-1], "--input-shape", "2,4"]) == 1  # another shape: refused, one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("embridge: error: "), err


def test_embed_dataset_embeds_texts_with_the_models_document_prompt(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The command embedded texts with no prompt, so its vectors differed from ``embed`` and ``backfill``
    (by 0.2 here); by default it uses the document prompt, and ``--role query`` the query prompt."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer
    from text_fixtures import tiny_sentence_transformer

    from embridge.core.cli.main import main

    folder = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "query: ", "document": "passage: "})
    texts = [f"the old man and the sea number {i}" for i in range(20)]
    (tmp_path / "items").mkdir()
    pq.write_table(pa.table({"id": np.arange(20), "input": texts}), tmp_path / "items" / "part-0.parquet")
    model = SentenceTransformer(str(folder), device="cpu")
    for role, extra in (("document", []), ("query", ["--role", "query"])):
        out = tmp_path / f"out-{role}"
        assert main(["embed-dataset", "--model", str(folder), "--from", str(tmp_path / "items"), "--to", str(out),
                     *extra]) == 0, capsys.readouterr().err
        ids, vectors = read_chunks(out)
        expected = model.encode(texts, prompt_name=role, normalize_embeddings=True)
        np.testing.assert_allclose(vectors[np.argsort(ids)], expected, atol=1e-5)
        assert np.abs(model.encode(texts, prompt="", normalize_embeddings=True) - expected).max() > 1e-2
    # the same texts dictionary-encoded (pandas categories write them so) are the same items: they were
    # refused as 'neither a fixed-size list of floats nor text', naming the folder
    (tmp_path / "coded").mkdir()
    pq.write_table(pa.table({"id": np.arange(20), "input": pa.array(texts).dictionary_encode()}),
                   tmp_path / "coded" / "part-0.parquet")
    assert main(["embed-dataset", "--model", str(folder), "--from", str(tmp_path / "coded"), "--to",
                 str(tmp_path / "out-coded")]) == 0, capsys.readouterr().err
    ids, vectors = read_chunks(tmp_path / "out-coded")
    np.testing.assert_allclose(vectors[np.argsort(ids)], model.encode(texts, prompt_name="document",
                                                                      normalize_embeddings=True), atol=1e-5)
