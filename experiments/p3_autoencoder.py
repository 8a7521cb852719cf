"""P3: does a code learned without labels keep what a linear classifier needs?

``p3_ae`` trains an autoencoder and saves its encoder; ``p3_probe`` (which depends on it) loads
that encoder from the stored artifact, encodes the digits and fits a linear probe on the codes.
PCA with as many components is the unsupervised linear baseline for both steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from experiments import common


def _pca(split: common.Split, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``k`` principal directions (64 x k) of the training images."""
    mean = split.x_train.mean(axis=0)
    _, _, vt = np.linalg.svd(split.x_train - mean, full_matrices=False)
    return mean, vt[:k].T


def _reconstruction_figure(originals: np.ndarray, rows: dict[str, np.ndarray]):
    plt = common.pyplot()
    n = len(originals)
    labels = ["original", *rows]
    fig, axes = plt.subplots(len(labels), n, figsize=(n * 0.6, len(labels) * 0.7), dpi=80)
    for r, images in enumerate([originals, *rows.values()]):
        for c in range(n):
            axes[r, c].imshow(images[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def p3_ae(runner, digits) -> dict:
    """A 64-128-k-128-64 autoencoder trained on reconstruction (MSE) only: labels are never used."""
    common.setup_torch(runner.params)
    torch.manual_seed(runner.seed)
    p = runner.params
    split = digits(p)
    data = split.tensors(runner.device)
    enc, dec = common.encoder(p["hidden"], p["latent"]), common.decoder(p["hidden"], p["latent"])
    model = nn.Sequential(enc, dec).to(runner.device)
    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    gen = torch.Generator().manual_seed(int(runner.seed))
    x_train = data["x_train"]

    def mse(x: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            return float(((model(x) - x) ** 2).mean())

    for epoch in range(p["epochs"]):
        model.train()
        total = 0.0
        for idx in common.minibatches(len(x_train), p["batch_size"], gen, runner.device):
            opt.zero_grad()
            loss = ((model(x_train[idx]) - x_train[idx]) ** 2).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        runner.log_metrics({"train_mse": total / len(x_train), "val_mse": mse(data["x_val"])}, step=epoch)
        runner.progress((epoch + 1) / p["epochs"])

    recon_mse = mse(data["x_test"])
    mean, components = _pca(split, p["latent"])
    pca_recon = (split.x_test - mean) @ components @ components.T + mean
    pca_mse = float(((pca_recon - split.x_test) ** 2).mean())

    encoder_path = runner.results.save_artifact("encoder.pt", common.state_dict_bytes(enc))
    show = split.x_test[: p.get("n_shown", 10)]
    model.eval()
    with torch.no_grad():
        ae_recon = model(torch.as_tensor(show, device=runner.device)).cpu().numpy()
    fig = _reconstruction_figure(show, {"autoencoder": ae_recon, "PCA": pca_recon[: len(show)]})
    figure_path = runner.save_figure(fig, "reconstructions.png")
    common.close(fig)
    return {
        "finding": (
            f"The {p['latent']}-number code reconstructs test digits with MSE {recon_mse:.4f}; "
            f"PCA with {p['latent']} components: {pca_mse:.4f}"
        ),
        "metrics": {"recon_mse": recon_mse, "pca_recon_mse": pca_mse},
        "artifacts": [encoder_path, figure_path],
    }


def _probe(runner, codes: dict[str, np.ndarray], split: common.Split) -> float:
    """Test accuracy of a linear classifier on standardised codes (statistics from the training set)."""
    mean, std = codes["train"].mean(axis=0), codes["train"].std(axis=0) + 1e-6
    data = {f"z_{part}": torch.as_tensor((z - mean) / std, device=runner.device) for part, z in codes.items()}
    data.update({k: v for k, v in split.tensors(runner.device).items() if k.startswith("y_")})
    torch.manual_seed(runner.seed)
    model = nn.Linear(codes["train"].shape[1], common.N_CLASSES)
    common.train_classifier(
        runner,
        model,
        data,
        x_key="z",
        log=False,
    )
    return common.accuracy(model, data["z_test"], data["y_test"])


def p3_probe(runner, digits) -> dict:
    """Linear probe on the autoencoder's codes (read from p3_ae's encoder.pt) and on PCA codes."""
    common.setup_torch(runner.params)
    upstream = runner.upstream["p3_ae"]
    encoder_file = next(a for a in upstream["artifacts"] if Path(a).name == "encoder.pt")
    latent = int(runner.params["latent"])
    enc = common.load_state_dict_bytes(common.encoder(runner.params["hidden"], latent), encoder_file)
    enc.to(runner.device).eval()
    split = digits(runner.params)
    data = split.tensors(runner.device)
    with torch.no_grad():
        ae_codes = {part: enc(data[f"x_{part}"]).cpu().numpy() for part in ("train", "val", "test")}
    mean, components = _pca(split, latent)
    pca_codes = {part: (getattr(split, f"x_{part}") - mean) @ components for part in ("train", "val", "test")}

    probe_accuracy = _probe(runner, ae_codes, split)
    runner.progress(0.5, stage="PCA probe")
    pca_probe_accuracy = _probe(runner, pca_codes, split)
    runner.progress(1.0)
    return {
        "finding": (
            f"A linear probe reads {probe_accuracy:.1%} of test digits from the {latent}-number autoencoder "
            f"code, against {pca_probe_accuracy:.1%} from {latent} PCA components"
        ),
        # Whether the code beats PCA is the plan's criterion (probe_accuracy: "> :pca_probe_accuracy").
        "metrics": {"probe_accuracy": probe_accuracy, "pca_probe_accuracy": pca_probe_accuracy},
    }
