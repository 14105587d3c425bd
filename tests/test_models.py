"""Tests of microexp.models and microexp.aus: PLIF against spikingjelly, the SNN's streaming and batch modes,
parameter counts, the 3D-CNN and cVAE shapes, and the checkpoint format with its errors."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from microexp.aus import AU_CODES, AU_LABELS, AU_NAMES, au_index, au_label, au_name
from microexp.errors import FormatError, MicroexpError, ParameterError
from microexp.models import (
    AUSpikingNet,
    C3DNet,
    CheckpointArchitectureError,
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointStateError,
    CNN3DConfig,
    ConditionalVAE,
    CVAEConfig,
    PLIFNode,
    SequenceDropout,
    SNNConfig,
    count_parameters,
    cvae_loss,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)


class _NullLogger:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def spikingjelly():
    """spikingjelly's neuron and surrogate modules.

    spikingjelly 2.0.0 imports loguru at package import, and the pip environment installs spikingjelly with
    --no-deps without loguru; a no-op stand-in is registered then (spikingjelly only disables its logger).
    """
    if importlib.util.find_spec("spikingjelly") is None:
        pytest.skip("spikingjelly is not installed")
    if "loguru" not in sys.modules and importlib.util.find_spec("loguru") is None:
        stub = types.ModuleType("loguru")
        stub.logger = _NullLogger()
        sys.modules["loguru"] = stub
    neuron = importlib.import_module("spikingjelly.activation_based.neuron")
    surrogate = importlib.import_module("spikingjelly.activation_based.surrogate")
    return neuron, surrogate


# --------------------------------------------------------------------------------------------- AU table


def test_au_table_follows_the_paper():
    assert AU_CODES == (2, 4, 5, 6, 9, 12, 15, 17, 23, 26, 41, 43, 45, 51, 52, 53, 54, 61, 62, 63, 64)
    assert len(AU_NAMES) == len(AU_LABELS) == 21
    assert AU_NAMES[0] == "Outer Brow Raiser" and AU_NAMES[12] == "Blink" and AU_NAMES[-1] == "Eyes Down"


@pytest.mark.parametrize("spelling", ["AU12", "au12", "12", "AU 12", 12])
def test_au_index_accepts_common_spellings(spelling):
    assert au_index(spelling) == 5
    assert au_label(5) == "AU12" and au_name(spelling) == "Lip Corner Puller"


@pytest.mark.parametrize("bad", ["AU3", "x12", "", 7, True])
def test_au_index_rejects_unknown(bad):
    with pytest.raises(ParameterError, match="AU2, AU4"):
        au_index(bad)
    with pytest.raises(ParameterError):
        au_label(21)


# --------------------------------------------------------------------------------------------- PLIF


def test_plif_initial_tau_and_reset():
    node = PLIFNode()
    assert node.w.item() == 0.0 and node.tau == pytest.approx(2.0)
    assert PLIFNode(init_tau=3.0).tau == pytest.approx(3.0)
    node(torch.ones(3, 2, 4))
    assert node.v is not None
    with pytest.raises(ParameterError, match="reset"):
        node(torch.ones(3, 5, 4))
    node.reset()
    assert node.v is None
    # tau = 2: H = (V + X) / 2, so a constant input of 1.5 gives H = 0.75, 1.125 (spike), 0.75, ...
    assert node(torch.full((3, 1), 1.5)).flatten().tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("detach_reset,dtype", [(False, torch.float32), (True, torch.float32), (False, torch.float64)])
def test_plif_equals_spikingjelly(detach_reset, dtype):
    """spikingjelly runs its CPU kernel for float32 and its autograd reference for float64."""
    neuron, surrogate = spikingjelly()
    ref = neuron.ParametricLIFNode(
        surrogate_function=surrogate.ATan(), detach_reset=detach_reset, step_mode="m", store_v_seq=True
    )
    mine = PLIFNode(detach_reset=detach_reset, store_v_seq=True)
    assert ref.decay_input and ref.v_reset == 0.0 and ref.v_threshold == 1.0
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ref.w.fill_(0.3)
        mine.w.fill_(0.3)
    inputs = [(torch.randn(16, 3, 5, 7, generator=gen) * 1.5 + 0.5).to(dtype) for _ in range(2)]
    leaves = {name: [x.clone().requires_grad_() for x in inputs] for name in ("ref", "mine")}
    loss = {}
    for name, node in (("ref", ref), ("mine", mine)):
        spikes = [node(x) for x in leaves[name]]  # two calls: the second continues from the first's membrane
        loss[name] = spikes
        assert torch.equal(node.v_seq[-1], node.v)
    for a, b in zip(loss["ref"], loss["mine"]):
        assert torch.equal(a, b)
    assert 0.05 < loss["mine"][0].mean().item() < 0.6
    assert torch.equal(ref.v, mine.v) and torch.equal(ref.v_seq, mine.v_seq)
    weights = [torch.randn(16, 3, 5, 7, generator=gen).to(dtype) for _ in range(2)]
    for name, node in (("ref", ref), ("mine", mine)):
        total = sum((s * g).sum() for s, g in zip(loss[name], weights)) + node.v.sum()
        total.backward()
    for a, b in zip(leaves["ref"], leaves["mine"]):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(mine.w.grad, ref.w.grad, rtol=1e-6, atol=1e-6)


def test_plif_spikingjelly_backend_matches_torch_backend():
    spikingjelly()
    x = torch.randn(12, 4, 9, generator=torch.Generator().manual_seed(2)) + 0.6
    outs = []
    for backend in ("torch", "spikingjelly"):
        node = PLIFNode(backend=backend)
        xi = x.clone().requires_grad_()
        spikes = node(xi)
        spikes.sum().backward()
        outs.append((spikes, node.v, xi.grad, node.w.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    torch.testing.assert_close(outs[0][2], outs[1][2], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[0][3], outs[1][3], rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(1, 12),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    detach_reset=st.booleans(),
)
def test_plif_single_steps_equal_multi_step(steps, shape, seed, detach_reset):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, *shape, generator=gen) * 2
    w0 = torch.rand((), generator=gen) - 0.5
    results = []
    for streaming in (False, True):
        node = PLIFNode(detach_reset=detach_reset)
        with torch.no_grad():
            node.w.copy_(w0)
        xi = x.clone().requires_grad_()
        spikes = torch.stack([node.single_step(xt) for xt in xi]) if streaming else node(xi)
        (spikes * torch.linspace(-1, 1, spikes.numel()).reshape(spikes.shape)).sum().backward()
        results.append((spikes, node.v, xi.grad, node.w.grad))
    (s0, v0, gx0, gw0), (s1, v1, gx1, gw1) = results
    assert torch.equal(s0, s1) and torch.equal(v0, v1)
    node = PLIFNode(detach_reset=detach_reset)
    with torch.no_grad():  # the inference path, which keeps no history for backward
        node.w.copy_(w0)
        assert torch.equal(node(x), s0) and torch.equal(node.v, v0)
    torch.testing.assert_close(gx1, gx0, rtol=0, atol=1e-6)
    torch.testing.assert_close(gw1, gw0, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------- SNN


def test_snn_parameter_count_is_the_papers():
    model = AUSpikingNet(SNNConfig())
    assert count_parameters(model) == 4_312_470  # "4.11M" in the paper's Table 5 is 4.11 Mi
    assert round(count_parameters(model) / 2**20, 2) == 4.11
    assert model.conv1.bias is None and model.conv2.bias is None
    assert sum(isinstance(m, PLIFNode) for m in model.modules()) == 4


def _active_snn(seed: int = 0, **config) -> AUSpikingNet:
    """An SNN in eval mode whose random weights are scaled so that every layer spikes on random input."""
    torch.manual_seed(seed)
    model = AUSpikingNet(SNNConfig(**config)).eval()
    with torch.no_grad():
        model.bn1.weight.fill_(4.0)
        model.bn2.weight.fill_(4.0)
        model.fc1.weight.mul_(4.0)
        model.fc2.weight.mul_(6.0)
    return model


def _event_frames(steps: int, batch: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 2, size, size, generator=gen) < 0.3).float()


@pytest.mark.parametrize("steps", [1, 2, 5, 9])
def test_snn_streaming_equals_multi_step(steps):
    model = _active_snn(seed=steps)
    x = _event_frames(steps, 2, seed=steps)
    with torch.no_grad():
        mean, per_step = model(x, return_sequence=True)
        assert mean.shape == (2, 21) and per_step.shape == (steps, 2, 21)
        model.reset()
        for t in range(steps):
            running = model.step(x[t])
            torch.testing.assert_close(running, per_step[: t + 1].mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(running, mean, rtol=0, atol=1e-6)
    assert model.steps == steps
    if steps >= 5:  # the fourth layer needs a few steps to charge; then outputs are not all zero
        assert mean.sum() > 0


def test_snn_step_continues_after_forward():
    model = _active_snn(seed=3)
    x = _event_frames(6, 1, seed=3)
    with torch.no_grad():
        whole = model(x)
        model(x[:4])
        model.step(x[4])
        torch.testing.assert_close(model.step(x[5]), whole, rtol=0, atol=1e-6)


def test_snn_input_shapes_are_checked():
    model = AUSpikingNet()
    with pytest.raises(ParameterError, match=r"\[T, B, C, H, W\]"):
        model(torch.zeros(2, 2, 64, 64))
    with pytest.raises(ParameterError, match=r"\(2, 64, 64\)"):
        model.step(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ParameterError):
        SNNConfig(fc_out=200)


def test_sequence_dropout_keeps_one_mask_per_sequence():
    torch.manual_seed(0)
    drop = SequenceDropout(0.5).train()
    out = drop(torch.ones(6, 3, 40))
    assert (out == 0).any() and (out == 2).any()
    assert all(torch.equal(out[0], out[t]) for t in range(6))
    assert torch.equal(drop.single_step(torch.ones(3, 40)), out[0])  # single steps reuse it until reset
    drop.reset()
    assert not torch.equal(drop(torch.ones(6, 3, 40))[0], out[0])
    assert torch.equal(drop.eval()(torch.ones(2, 3, 40)), torch.ones(2, 3, 40))


def test_snn_trains_small():
    torch.manual_seed(0)
    model = AUSpikingNet(SNNConfig(input_size=16, fc_hidden=64)).train()
    x = _event_frames(4, 3, size=16)
    target = torch.nn.functional.one_hot(torch.tensor([0, 5, 20]), 21).float()
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert model.plif1.w.grad.abs() > 0
    copy.deepcopy(model)  # the membranes still on the graph must not break copies (best-model snapshots)


def test_snn_spikingjelly_neuron_gives_same_outputs():
    spikingjelly()
    reference = _active_snn(seed=4)
    other = AUSpikingNet(SNNConfig(neuron="spikingjelly")).eval()
    other.load_state_dict(reference.state_dict())
    x = _event_frames(5, 2, seed=4)
    with torch.no_grad():
        assert torch.equal(reference(x), other(x))


# --------------------------------------------------------------------------------------------- 3D-CNN and cVAE


def test_cnn3d_parameters_near_the_papers():
    with torch.device("meta"):
        events, rgb = C3DNet(CNN3DConfig(in_channels=2)), C3DNet(CNN3DConfig(in_channels=3))
    assert count_parameters(events) == 13_255_061 and count_parameters(rgb) == 13_255_925
    assert abs(count_parameters(events) - 13.06e6) / 13.06e6 < 0.02


@pytest.mark.parametrize("channels,steps", [(2, 1), (2, 2), (3, 7), (2, 16)])
def test_cnn3d_any_clip_length(channels, steps):
    torch.manual_seed(0)
    model = C3DNet(CNN3DConfig(in_channels=channels)).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, channels, steps, 64, 64))
    assert logits.shape == (2, 21) and torch.isfinite(logits).all()
    with pytest.raises(ParameterError):
        model(torch.rand(2, 5 - channels, steps, 64, 64))


def test_build_model_dispatches_by_name_and_scores_in_unit_range():
    from microexp.models.registry import MODEL_NAMES, build_model, model_kind

    assert MODEL_NAMES == ("snn", "cnn3d")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 2, 64, 64)  # [B, T, C, S, S]
    for name, cls in (("snn", AUSpikingNet), ("cnn3d", C3DNet)):
        model = build_model(name, in_channels=2, dropout=0.2).eval()
        assert type(model) is cls and model_kind(model).name == name
        with torch.no_grad():
            scores = model_kind(name).scores(model, x)
        assert scores.shape == (2, 21) and bool(((scores >= 0) & (scores <= 1)).all())
    snn = build_model("snn", in_channels=3, init_tau=3.0)
    assert snn.config.in_channels == 3 and snn.config.init_tau == 3.0


def test_build_model_rejects_unknown_names_naming_the_choices():
    from microexp.models.registry import build_model, model_kind

    with pytest.raises(ParameterError, match=r"^model must be one of snn, cnn3d, got 'resnet'$"):
        build_model("resnet")
    with pytest.raises(ParameterError, match=r"^--model must be one of snn, cnn3d, got 'cvae'$"):
        model_kind("cvae", "--model")
    with pytest.raises(ParameterError, match="ConditionalVAE is none of the AU classifiers"):
        model_kind(ConditionalVAE(CVAEConfig(input_size=32)))


def test_cvae_shapes_loss_and_sampling():
    with torch.device("meta"):
        assert count_parameters(ConditionalVAE(CVAEConfig())) == 135_874_753
    torch.manual_seed(0)
    model = ConditionalVAE(CVAEConfig(input_size=32)).train()
    x, c = torch.rand(4, 1, 32, 32), torch.rand(4, 2, 32, 32)
    x_hat, mu, logvar = model(x, c)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (4, 32)
    assert ((x_hat > 0) & (x_hat < 1)).all()
    loss, recon, kl = cvae_loss(x_hat, x, mu, logvar)
    assert torch.isfinite(loss) and kl >= 0 and loss.item() == pytest.approx((recon + kl).item())
    loss.backward()
    model.eval()
    prior = model.sample(c)
    torch.testing.assert_close(prior, model.decode(torch.zeros(4, 32), c))
    drawn = model.sample(c, random=True, generator=torch.Generator().manual_seed(1))
    assert drawn.shape == (4, 1, 32, 32) and not torch.equal(drawn, prior)
    with pytest.raises(ParameterError):
        model.sample(torch.rand(4, 2, 64, 64))


# --------------------------------------------------------------------------------------------- checkpoints


def _models():
    torch.manual_seed(0)
    return {
        "snn": _active_snn(seed=5),
        "cnn3d": C3DNet(CNN3DConfig(in_channels=3, widths=(4, 4, 8, 8, 8, 8, 8, 8), fc_hidden=32)).eval(),
        "cvae": ConditionalVAE(CVAEConfig(input_size=16, latent_dim=8)).eval(),
    }


def _inputs(architecture):
    gen = torch.Generator().manual_seed(7)
    if architecture == "snn":
        return (_event_frames(3, 2, seed=7),)
    if architecture == "cnn3d":
        return (torch.rand(2, 3, 5, 64, 64, generator=gen),)
    return (torch.rand(2, 1, 16, 16, generator=gen), torch.rand(2, 2, 16, 16, generator=gen))


@pytest.mark.parametrize("architecture", ["snn", "cnn3d", "cvae"])
def test_checkpoint_round_trip(tmp_path, architecture):
    model = _models()[architecture]
    path = tmp_path / "run" / f"{architecture}.pt"
    extra = {
        "metrics": {"acc": 0.5},
        "args": {"lr": 1e-3, "epochs": 100},
        "dataset": tmp_path,
        "curve": torch.arange(3.0),
    }
    save_checkpoint(path, model, model.config, extra=extra)
    torch.load(path, weights_only=True)  # plain content only
    loaded, meta = load_checkpoint(path, expected=architecture)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    assert meta["architecture"] == architecture and meta["parameters"] == count_parameters(model)
    with torch.no_grad():
        assert torch.equal(_first(model(*_inputs(architecture))), _first(loaded(*_inputs(architecture))))
    info = describe_checkpoint(path)
    json.dumps(info)
    assert {"format", "architecture", "parameters", "config", "classes", "extra"} <= set(info)
    assert info["format"] == "microexp-checkpoint-1" and info["extra"]["dataset"] == str(tmp_path)
    assert info["extra"]["curve"] == [0.0, 1.0, 2.0]
    assert info["classes"] == ([] if architecture == "cvae" else list(AU_LABELS))


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def test_checkpoint_config_overrides(tmp_path):
    model = AUSpikingNet(SNNConfig(input_size=16))
    save_checkpoint(tmp_path / "s.pt", model)
    loaded, meta = load_checkpoint(tmp_path / "s.pt", config_overrides={"dropout": 0.0})
    assert meta["config"].dropout == 0.0


def test_checkpoint_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointNotFoundError, match="nope.pt"):
        load_checkpoint(path)
    with pytest.raises(MicroexpError, match="nope.pt"):
        describe_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [
        b"definitely not a checkpoint",
        "truncated",
        {"weights": torch.zeros(2)},
        {"format": "microexp-checkpoint-99"},
        {"format": "microexp-checkpoint-1", "architecture": "snn"},
        "unsafe",
    ],
)
def test_checkpoint_not_microexp_or_corrupted(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(path, AUSpikingNet(SNNConfig(input_size=16)))
        path.write_bytes(path.read_bytes()[:5000])
    elif content == "unsafe":
        torch.save({"format": "microexp-checkpoint-1", "obj": SequenceDropout(0.1)}, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointFormatError, match="bad.pt") as err:
        load_checkpoint(path)
    assert isinstance(err.value, FormatError)
    with pytest.raises(CheckpointFormatError):
        describe_checkpoint(path)


def test_checkpoint_wrong_architecture(tmp_path):
    path = tmp_path / "s.pt"
    save_checkpoint(path, AUSpikingNet(SNNConfig(input_size=16)))
    with pytest.raises(CheckpointArchitectureError, match=r"'snn'.*'cnn3d'") as err:
        load_checkpoint(path, expected="cnn3d")
    assert err.value.expected == "cnn3d" and err.value.found == "snn"


def test_checkpoint_state_dict_mismatch(tmp_path):
    path = tmp_path / "s.pt"
    save_checkpoint(path, AUSpikingNet(SNNConfig(input_size=16)))
    data = torch.load(path, weights_only=True)
    data["state_dict"].pop("fc1.weight")
    data["state_dict"]["fc9.weight"] = torch.zeros(1)
    data["state_dict"]["fc2.bias"] = torch.zeros(3)
    torch.save(data, path)
    expected = r"missing keys: fc1\.weight; unexpected keys: fc9\.weight; shape mismatches: fc2\.bias"
    with pytest.raises(CheckpointStateError, match=expected) as err:
        load_checkpoint(path)
    assert err.value.missing == ["fc1.weight"] and err.value.unexpected == ["fc9.weight"]


def test_save_checkpoint_rejects_what_cannot_be_stored(tmp_path):
    model = AUSpikingNet(SNNConfig(input_size=16))
    with pytest.raises(ParameterError, match=r"extra\.bad"):
        save_checkpoint(tmp_path / "s.pt", model, extra={"bad": object()})
    with pytest.raises(ParameterError, match="differs"):
        save_checkpoint(tmp_path / "s.pt", model, SNNConfig())
    with pytest.raises(ParameterError):
        save_checkpoint(tmp_path / "s.pt", torch.nn.Linear(2, 2), None)
    assert not list(tmp_path.iterdir())


def test_event_driven_fc1_equals_dense_product():
    """The layer-by-layer streaming step computes fc1 from the active spikes only (CPU, eval); it must equal
    the dense layer."""
    torch.manual_seed(4)
    model = AUSpikingNet(SNNConfig()).eval()
    model.FUSED_STEP = False  # the fused kernel (tested below) would bypass fc1 altogether
    with torch.no_grad():  # a random model barely spikes; scale it so that every layer does
        for layer in (model.conv1, model.conv2, model.fc1, model.fc2):
            layer.weight.mul_(8)
    x = (torch.rand(12, 2, 2, 64, 64) < 0.3).float() * torch.rand(12, 2, 2, 64, 64) * 4
    outs = {}
    for name, density in (("sparse", 1.0), ("dense", 0.0)):
        model.SPARSE_FC_DENSITY = density
        model.reset()
        seen = []
        orig = model.fc1.forward
        model.fc1.forward = lambda s, orig=orig, seen=seen: seen.append(1) or orig(s)
        with torch.inference_mode():
            outs[name] = torch.stack([model.step(x[t]) for t in range(len(x))])
        del model.fc1.forward
        assert bool(seen) == (name == "dense"), name  # the sparse run never called the dense layer
    with torch.inference_mode():
        model.reset()
        active = [
            int(
                model.pool2(
                    model.plif2.single_step(
                        model.bn2(model.conv2(model.pool1(model.plif1.single_step(model.bn1(model.conv1(x[t]))))))
                    )
                ).count_nonzero()
            )
            for t in range(len(x))
        ]
    assert sum(active) > 0  # fc1 had spikes to carry
    torch.testing.assert_close(outs["sparse"], outs["dense"], atol=1e-5, rtol=0)
    with torch.inference_mode():
        model.reset()
        torch.testing.assert_close(model(x), outs["dense"][-1], atol=1e-5, rtol=0)


def test_fused_cpu_step_is_bit_identical_to_the_multi_step_loop():
    """The live node's single steps (fused numba kernel, membrane updated in place) give the same bits as
    the multi-step inference loop, including spikes, resets and the membrane left behind."""
    from microexp.models.plif import PLIFNode, _fused_step_kernel

    torch.manual_seed(7)
    node = PLIFNode(init_tau=3.0)
    with torch.no_grad():
        node.w.fill_(0.3)
    x = torch.randn(25, 3, 8, 8) * 2
    with torch.inference_mode():
        ref = node.multi_step(x)
        v_ref = node.v.clone()
        node.reset()
        calls = []
        kernel = _fused_step_kernel()
        import microexp.models.plif as plif_module

        orig = plif_module._fused_step_kernel
        plif_module._fused_step_kernel = lambda: (calls.append(1), kernel)[1]
        try:
            steps = torch.stack([node.single_step(x[t]) for t in range(len(x))])
        finally:
            plif_module._fused_step_kernel = orig
    assert len(calls) == len(x)  # the fused path ran
    assert 0 < int(ref.sum()) < ref.numel()  # some spikes, some not
    assert torch.equal(steps, ref) and torch.equal(node.v, v_ref)


def _busy_model(seed: int) -> AUSpikingNet:
    """A random SNN scaled so that every layer spikes, with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = AUSpikingNet(SNNConfig()).eval()
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.fc1, model.fc2):
            layer.weight.mul_(8)
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        for p in (model.plif1, model.plif2, model.plif3, model.plif4):
            p.w.uniform_(-1, 1)
    return model


def test_fused_cpu_step_equals_the_layer_by_layer_step_and_forward(monkeypatch):
    """The live node's step is one numba kernel (models.snn_fused): it must give the layer-by-layer step's
    outputs and membranes, continue a multi-step call's state, and stay out of training and autograd."""
    from microexp.models import snn_fused

    model = _busy_model(11)
    x = (torch.rand(14, 2, 2, 64, 64) < 0.1).float() * torch.rand(14, 2, 2, 64, 64) * 3
    outs, membranes = {}, {}
    for fused in (True, False):
        model.FUSED_STEP = fused
        model.reset()
        with torch.inference_mode():
            outs[fused] = torch.stack([model.step(x[t]) for t in range(len(x))])
        membranes[fused] = [p.v.contiguous() for p in (model.plif1, model.plif2, model.plif3, model.plif4)]
    assert float(outs[False].sum()) > 0 and all(float(v.abs().sum()) > 0 for v in membranes[False])
    torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=0)
    for a, b in zip(membranes[True], membranes[False]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), outs[True][-1], atol=1e-5, rtol=0)
        # a multi-step call, then fused steps: the same as one call over the whole sequence
        model.FUSED_STEP = True
        model(x[:6])
        for t in range(6, len(x)):
            last = model.step(x[t])
        torch.testing.assert_close(last, outs[False][-1], atol=1e-5, rtol=0)
    calls = []
    kernel = snn_fused._kernel()
    monkeypatch.setattr(snn_fused, "_kernel", lambda: lambda *a: calls.append(1) or kernel(*a))
    model.reset()
    with torch.inference_mode():
        model.step(x[0])
    assert calls == [1]
    model.reset()
    model.step(x[0])  # autograd on: layer by layer
    model.train()
    with torch.inference_mode():
        model.reset()
        model.step(x[0])  # training: layer by layer
    assert calls == [1] and not snn_fused.supported(model)


def test_functional_step_for_cuda_graphs_equals_the_streaming_step():
    """models.snn_graph.functional_step (what CudaGraphStep captures on a GPU) leaves the model untouched and
    gives model.step's outputs and membranes; CudaGraphStep refuses to start without CUDA."""
    from microexp.models import snn_graph

    model = _busy_model(12)
    model.FUSED_STEP = False
    x = (torch.rand(12, 2, 2, 64, 64) < 0.1).float() * torch.rand(12, 2, 2, 64, 64) * 3
    with torch.inference_mode():
        model.reset()
        ref = torch.stack([model.step(x[t]) for t in range(len(x))])
        ref_v = [p.v.clone() for p in (model.plif1, model.plif2, model.plif3, model.plif4)]
        model.reset()
        state = snn_graph.initial_state(model, batch=2)
        total = torch.zeros(2, 21)
        got = []
        for t in range(len(x)):
            out, state = snn_graph.functional_step(model, x[t], state)
            total = total + out
            got.append(total / (t + 1))
        assert model.plif1.v is None  # the model's own state was not used
    assert float(ref.sum()) > 0
    torch.testing.assert_close(torch.stack(got), ref, atol=1e-6, rtol=0)
    for a, b in zip(state, ref_v):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA"):
            snn_graph.CudaGraphStep(model)
        assert snn_graph.graphed(model, "cpu") is None
