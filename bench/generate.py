"""Seconds per generated image through `pez.generate` (median/min/max over repeats).

1. The tiny random SD pipeline (pez.testing.tiny_sd) on the CPU, 64x64: the fixed cost of the
   generation path (tokenizer, text encoder, UNet steps, VAE, PIL) without model compute.
2. With CUDA: SD-Turbo 512x512, 1 step, guidance 0 (target on an H100: <= 0.3 s/image) and
   SD 2.1-base 512x512, 25 DPM-Solver steps, guidance 9, 4 images (the paper's setting), fp16.
   Real weights come from the hub cache; `--random-weights` builds the same architectures with
   random weights instead (speed does not depend on weight values) when they are missing.

    python bench/generate.py
    python bench/generate.py --device cuda --random-weights --repeats 10
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from pez.config import GenerateConfig
from pez.errors import WeightsNotFoundError
from pez.generate import generate, load_generator
from pez.models import get_pair

TURBO_TARGET = 0.3  # s/image, SD-Turbo 512x512 1 step on an H100


def seconds_per_image(pair: str, pipeline, config: GenerateConfig, repeats: int) -> list[float]:
    """One warm-up, then `repeats` timed runs; each run's wall time divided by its images."""
    generate(pair, "a photo of a red fox in the snow", config, pipeline=pipeline, score=False)
    runs = [
        generate(pair, "a photo of a red fox in the snow", config, pipeline=pipeline, score=False)
        for _ in range(repeats)
    ]
    return [r.seconds_per_image for r in runs]


def report(label: str, times: list[float], target: float | None = None) -> None:
    med = statistics.median(times)
    verdict = "" if target is None else f"  target <= {target} s: {'OK' if med <= target else 'MISSED'}"
    print(f"{label:<52} {med:8.4f} s/image  (min {min(times):.4f}, max {max(times):.4f}, n={len(times)}){verdict}")


def bench_tiny(repeats: int, threads: int) -> None:
    from pez.testing.tiny_sd import tiny_pipeline

    torch.set_num_threads(threads)
    pipe = tiny_pipeline()
    print(f"\n# tiny random SD pipeline, CPU, {threads} thread(s)")
    for steps, guidance, n in [(1, 0.0, 1), (4, 5.0, 1), (4, 5.0, 4)]:
        config = GenerateConfig(steps=steps, guidance=guidance, num_images=n, width=64, height=64)
        report(
            f"64x64, {steps} step(s), guidance {guidance:g}, {n} image(s)",
            seconds_per_image("sd-2.1-base", pipe, config, repeats),
        )


def bench_cuda(repeats: int, random_weights: bool, offload: bool) -> None:
    print(f"\n# real-size generators, {torch.cuda.get_device_name()}, fp16")
    cases = [
        ("sd-turbo", GenerateConfig(num_images=1), TURBO_TARGET),
        ("sd-turbo", GenerateConfig(num_images=4), TURBO_TARGET),
        ("sd-2.1-base", GenerateConfig(num_images=4), None),
    ]
    for name, config, target in cases:
        pipe, note = _real_or_random(name, random_weights, offload)
        if pipe is None:
            continue
        pair = get_pair(name)
        torch.cuda.reset_peak_memory_stats()
        times = seconds_per_image(name, pipe, config, repeats)
        label = f"{name} {pair.size}px, {pair.steps} step(s), guidance {pair.guidance:g}, {config.num_images} image(s)"
        report(label + note, times, target)
        print(f"{'':<52} peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def _real_or_random(name: str, random_weights: bool, offload: bool) -> tuple[object | None, str]:
    """(pipeline, label note): the cached real generator, else random weights if allowed, else None."""
    try:
        return load_generator(name, "cuda", offload=offload), ""
    except WeightsNotFoundError as e:
        if not random_weights:
            print(f"{name}: skipped, weights not found ({str(e)[:160]}...); --random-weights times the architecture")
            return None, ""
    return random_sd2_pipeline(scheduler="euler" if name == "sd-turbo" else "dpm-multistep"), " [random weights]"


def random_sd2_pipeline(scheduler: str):
    """SD 2.x-base architecture (UNet, VAE, OpenCLIP-H text encoder) with random fp16 weights."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from pez.testing.tiny_sd import make_scheduler, tiny_tokenizer

    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=23,
            num_attention_heads=16,
            hidden_act="gelu",
            projection_dim=512,
            bos_token_id=49406,
            eos_token_id=49407,
        )
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tiny_tokenizer(),
        scheduler=make_scheduler(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda", torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for the tiny pipeline (overhead-bound)")
    parser.add_argument(
        "--random-weights", action="store_true", help="time SD-sized random pipelines if weights are missing"
    )
    parser.add_argument("--offload", action="store_true", help="enable_model_cpu_offload for the real-size generators")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {platform.processor() or platform.machine()}"
    )
    bench_tiny(args.repeats, args.threads)
    if torch.cuda.is_available():
        bench_cuda(args.repeats, args.random_weights, args.offload)
    else:
        print("\nSD-Turbo 512x512 1 step and SD 2.1-base 25 steps: skipped (no CUDA device)")


if __name__ == "__main__":
    main()
