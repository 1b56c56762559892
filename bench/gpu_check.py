"""One GPU check, offline, random weights at real size: PEZ, SDXL's joint search, SD-Turbo and Flux.

Prints, for ViT-H-14 (M = 16): seconds per 1,000 PEZ steps with 1 and 8 candidates, in bf16 eager
and compiled (torch.compile "reduce-overhead", i.e. CUDA graphs) and fp32 eager; the score a bf16
and an fp32 search reach from the same seed (scores are fp32 either way); the default settings in a
20 s time budget (search and polish shares, the refine batch sized from its forwards); SDXL's joint search
(ViT-L-14 + ViT-bigG-14, one prompt for both, the pair's weights) against bigG alone: seconds per
1,000 steps and peak VRAM, with the vision towers on the GPU only while the target is encoded;
SD-Turbo seconds per 512x512 image (1 step, guidance 0, fp16); FLUX.1-schnell seconds per
1024x1024 image (4 steps, guidance 0, bf16; 16.9B random parameters built on the GPU from the
published configs), also with model CPU offload; and the peak VRAM of each part. Goals on an H100/H200:
1,000 steps <= 5 s, SD-Turbo <= 0.3 s per image. Takes ~3-6 minutes on one H100/H200 (compiling
for each batch size is most of it). Nothing is downloaded: open_clip builds the CLIP from its
config (pretrained=None), diffusers builds SD-Turbo's UNet/VAE and transformers its text encoder
from the published SD 2.x configs, and the tokenizer comes from open_clip's bundled BPE file.

    python bench/gpu_check.py                   # on a CUDA machine
    python bench/gpu_check.py --smoke           # tiny models, few steps, CPU: checks the script runs
    python bench/gpu_check.py --no-compile      # eager only
    python bench/gpu_check.py --only joint flux # some parts only

Last, it prints the per-step estimates pez_app/zerogpu.py reserves ZeroGPU durations from, to compare.
A check that fails is reported as FAILED and the others still run; the script then exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pez
from pez.engine import accel
from pez.engine.vocab import vocabulary
from pez.testing import tiny_sd

# SD-Turbo = SD 2.1-base architecture (stabilityai/sd-turbo unet/vae/text_encoder configs)
SD_TURBO_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    norm_num_groups=32,
    flip_sin_to_cos=True,
    freq_shift=0,
)
SD_TURBO_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=512,
)
SD_TURBO_TEXT = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu"
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


def _targets(clip, seed: int = 0) -> pez.Targets:
    dim = clip.feature_dim
    image = F.normalize(torch.randn(1, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)
    return pez.Targets(image.to(clip.device), torch.zeros(0, dim, device=clip.device))


def run_search(clip, precision: str, candidates: int, steps: int, compile: bool, prompt_len: int, seed: int = 0):
    """(seconds, result) of one PEZ run; the tower's compile mode is chosen by PEZ_COMPILE."""
    os.environ["PEZ_COMPILE"] = "1" if compile else "0"
    cfg = pez.InvertConfig(
        prompt_len=prompt_len,
        steps=steps,
        candidates=candidates,
        seed=seed,
        precision=precision,
        report_every=max(steps // 4, 1),
        refine_steps=0,  # seconds per 1,000 *search* steps: no refinement or pruning after them
        prune_tolerance=0.0,
    )
    _sync(clip.device)
    start = time.perf_counter()
    for rep in pez.optimize(clip, _targets(clip), cfg):
        pass
    _sync(clip.device)
    return time.perf_counter() - start, rep.result


def check_pez(args, device: torch.device) -> None:
    spec = "random:tiny" if args.smoke else f"random:{args.arch}"
    _reset_peak(device)
    t = time.perf_counter()
    clip = pez.load_clip(spec, device=str(device), precision="fp32")  # fp32 weights: honest scores
    _ = vocabulary(clip)
    print(f"[pez] {spec} built in {time.perf_counter() - t:.1f} s; peak VRAM {_peak(device)}", flush=True)
    steps, warm = (args.steps, args.warmup) if not args.smoke else (10, 3)
    # compiling costs ~1 min per (precision, candidates) shape: only the first precision is compiled
    variants = [(p, False) for p in args.precisions]
    if args.compile:
        variants.insert(1, (args.precisions[0], True))
    for precision, compile in variants:
        for n in (1, 8):
            label = f"{args.arch if not args.smoke else 'tiny'} {precision} {'compiled' if compile else 'eager':<8} candidates={n}"
            try:
                _reset_peak(device)
                t = time.perf_counter()
                run_search(clip, precision, n, warm, compile, args.prompt_len)  # compiles; warms caches
                warm_s = time.perf_counter() - t
                secs, result = run_search(clip, precision, n, steps, compile, args.prompt_len)
            except Exception as e:  # noqa: BLE001 - report and go on to the other checks
                failed(f"[pez] {label}", e)
                continue
            tower = accel.search_tower(clip, precision, compile=compile)
            fell_back = compile and tower._run is tower._eager
            print(
                f"[pez] {label}: {secs / steps * 1000:8.2f} s per 1,000 steps "
                f"({steps} steps timed; warm-up {warm_s:.1f} s; scans {result.stats['scan_fraction']:.0%}; "
                f"peak VRAM {_peak(device)}{'; COMPILE FELL BACK TO EAGER' if fell_back else ''})",
                flush=True,
            )
    # bf16 vs fp32: same seed, same steps; both scores are fp32 scores of the decoded text
    agree_steps = 300 if not args.smoke else 10
    scores = {}
    for precision in ("fp32", "bf16"):
        _, result = run_search(clip, precision, 4, agree_steps, False, args.prompt_len, seed=1)
        scores[precision] = result.score
    print(
        f"[pez] bf16-vs-fp32 agreement ({agree_steps} steps, 4 candidates, random target): "
        f"fp32 {scores['fp32']:.4f}, bf16 {scores['bf16']:.4f}, difference {scores['bf16'] - scores['fp32']:+.4f}",
        flush=True,
    )
    check_polish(clip, args)
    pez.models.clear_cache()


def check_polish(clip, args) -> None:
    """The default run within a time budget (issue 18): the search's share, the polish's share and
    the refine batch the run sized from its measured forwards (expected to grow to 64 on a GPU)."""
    budget = 20.0 if not args.smoke else 2.0
    cfg = pez.InvertConfig(prompt_len=args.prompt_len, steps=10_000, time_budget=budget, seed=0)
    _sync(clip.device)
    start = time.perf_counter()
    for rep in pez.optimize(clip, _targets(clip), cfg):
        pass
    _sync(clip.device)
    wall, st = time.perf_counter() - start, rep.result.stats
    print(
        f"[pez] default settings, time budget {budget:g} s: wall {wall:.1f} s, search {st['search_seconds']:.1f} s "
        f"({rep.result.steps_run} steps), polish {st['polish_seconds']:.1f} s ({st.get('refine_rounds', 0)} refine "
        f"rounds, last batch {st.get('refine_batch', '-')}), score {rep.result.score:.4f}",
        flush=True,
    )


def sd_turbo_pipeline(device: torch.device, dtype: torch.dtype):
    """SD-Turbo's architecture with random weights (no download), Euler trailing, no safety checker."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tiny_sd.tiny_tokenizer()
    text_cfg = CLIPTextConfig(
        vocab_size=len(tok),
        max_position_embeddings=tok.model_max_length,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        projection_dim=512,
        **SD_TURBO_TEXT,
    )
    with torch.device(device):
        pipe = StableDiffusionPipeline(
            unet=UNet2DConditionModel(**SD_TURBO_UNET),
            vae=AutoencoderKL(**SD_TURBO_VAE),
            text_encoder=CLIPTextModel(text_cfg),
            tokenizer=tok,
            scheduler=tiny_sd.make_scheduler("euler"),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe = pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_sd_turbo(args, device: torch.device) -> None:
    _reset_peak(device)
    if args.smoke:
        pipe, size, dtype = tiny_sd.tiny_pipeline(scheduler="euler"), 64, torch.float32
    else:
        dtype = torch.float16
        pipe, size = sd_turbo_pipeline(device, dtype), 512
    gen = torch.Generator(device="cpu").manual_seed(0)
    kwargs = dict(num_inference_steps=1, guidance_scale=0.0, height=size, width=size, output_type="pil", generator=gen)
    with torch.inference_mode():
        for _ in range(2):  # warm-up (cuDNN autotune, allocator)
            pipe("a lighthouse at dusk", **kwargs)
        times = []
        for _ in range(3 if args.smoke else 10):
            _sync(device)
            t = time.perf_counter()
            pipe("a lighthouse at dusk", **kwargs)
            _sync(device)
            times.append(time.perf_counter() - t)
    times.sort()
    print(
        f"[sd-turbo] {'tiny' if args.smoke else 'SD-Turbo architecture'} {size}x{size}, 1 step, guidance 0, "
        f"{str(dtype).removeprefix('torch.')}: {times[len(times) // 2]:.3f} s per image (median of {len(times)}, "
        f"min {times[0]:.3f}); peak VRAM {_peak(device)}",
        flush=True,
    )


def check_joint(args, device: torch.device) -> None:
    """SDXL's joint search (ViT-L-14 + ViT-bigG-14, random weights, the pair's weights) and bigG
    alone: seconds per 1,000 steps (1 and 8 candidates, eager, the 'auto' precision: bf16 on CUDA)
    and peak VRAM; the vision towers (bigG's: 1.8B parameters) visit the GPU only for the target."""
    import numpy as np
    from PIL import Image

    spec = "random:tiny+random:tiny-wide" if args.smoke else "random:ViT-L-14+random:ViT-bigG-14"
    os.environ["PEZ_COMPILE"] = "0"
    _reset_peak(device)
    t = time.perf_counter()
    joint = pez.load_clip(spec, device=str(device), weights=pez.get_pair("sdxl").weights)
    print(f"[joint] {spec} built in {time.perf_counter() - t:.0f} s; peak VRAM {_peak(device)}", flush=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    steps, warm = (args.steps, args.warmup) if not args.smoke else (10, 3)
    for label, clip in (("joint L+bigG", joint), ("bigG alone", joint.clips[1])):
        _reset_peak(device)
        targets = pez.image_targets(clip, [image])  # the vision tower(s) visit the GPU here only
        encode_peak = _peak(device)
        for n in (1, 8):
            cfg = pez.InvertConfig(
                prompt_len=args.prompt_len, candidates=n, seed=0, refine_steps=0, prune_tolerance=0.0
            )
            try:
                _reset_peak(device)
                for count in (warm, steps):
                    _sync(device)
                    t = time.perf_counter()
                    *_, last = pez.optimize(clip, targets, cfg.replace(steps=count, report_every=max(count // 4, 1)))
                    _sync(device)
                    secs = time.perf_counter() - t
            except Exception as e:  # noqa: BLE001 - report and go on
                failed(f"[joint] {label} candidates={n}", e)
                continue
            res = last.result
            scores = ", ".join(f"{k.split('/')[0].removeprefix('random:')} {v:.3f}" for k, v in res.clip_scores.items())
            print(
                f"[joint] {label} candidates={n}: {secs / steps * 1000:8.2f} s per 1,000 steps ({steps} timed; "
                f"scans {res.stats['scan_fraction']:.0%}; score {res.score:.3f} = {scores}); peak VRAM {_peak(device)} "
                f"(target encoding {encode_peak})",
                flush=True,
            )
    del joint
    pez.models.clear_cache()


def flux_pipeline(device: torch.device, dtype: torch.dtype, smoke: bool):
    """FLUX.1-schnell's architecture (pez.testing.flux_replica's published configs; its small sizes
    for --smoke) with random weights built on `device`, and the replica's two tokenizers."""
    import tempfile
    from pathlib import Path

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTokenizer, T5TokenizerFast

    from pez.testing import flux_replica as FR
    from pez.testing.replica import EOT, write_tokenizer

    folder = Path(tempfile.mkdtemp(prefix="pez-flux-tokenizers-"))
    write_tokenizer(folder / "tokenizer", EOT)
    FR.write_t5_tokenizer(folder / "tokenizer_2")
    parts = {}
    for comp in FR.components(FR.SMALL if smoke else FR.FULL):
        parts[comp.folder] = FR.build_module(comp, device).to(dtype).eval()  # fp32 init, then the dtype
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the fp32 copy (47.6 GB for the transformer) before the next part
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FR.SCHEDULER),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=T5TokenizerFast.from_pretrained(folder / "tokenizer_2"),
        **parts,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_flux(args, device: torch.device) -> None:
    """FLUX.1-schnell through pez.regenerate at its defaults (4 steps, guidance 0, 1024x1024, T5
    length 256, bf16); then with model CPU offload (what a 24 GB GPU needs), peak VRAM of each."""
    from pez.config import GenerateConfig
    from pez.generate import generate

    _reset_peak(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t = time.perf_counter()
    pipe = flux_pipeline(device, dtype, args.smoke)
    print(f"[flux] built in {time.perf_counter() - t:.0f} s; peak VRAM {_peak(device)}", flush=True)
    config = GenerateConfig(seed=0, steps=2, width=64, height=64) if args.smoke else GenerateConfig(seed=0)
    label = "small replica 64x64, 2 steps" if args.smoke else "FLUX.1-schnell architecture 1024x1024, 4 steps"
    for offload in (False, True) if device.type == "cuda" else (False,):
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        _reset_peak(device)
        with torch.inference_mode():
            generate("flux-schnell", "a lighthouse at dusk", config, pipeline=pipe, score=False)  # warm-up
            times = []
            for _ in range(1 if offload or args.smoke else 3):
                _sync(device)
                times.append(
                    generate("flux-schnell", "a lighthouse at dusk", config, pipeline=pipe, score=False).seconds
                )
        print(
            f"[flux] {label}, guidance 0, T5 length 256, {str(dtype).removeprefix('torch.')}"
            f"{', model CPU offload' if offload else ''}: {min(times):.2f} s per image (min of {len(times)}); "
            f"peak VRAM {_peak(device)}",
            flush=True,
        )


PARTS = ("pez", "joint", "sd", "flux")
FAILURES: list[str] = []  # the checks that raised; any makes the script exit 1 (after the others ran)


def failed(label: str, e: Exception) -> None:
    """Report a failed check and go on to the others; main() exits 1 at the end."""
    print(f"{label}: FAILED {type(e).__name__}: {e}", flush=True)
    FAILURES.append(label)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny models, few steps (runs on a CPU)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--arch", default="ViT-H-14")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=30, help="steps run before timing (compiles)")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--skip-sd", action="store_true")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run")
    args = ap.parse_args()
    if args.skip_sd:
        args.only = [p for p in args.only if p != "sd"]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke:
        args.compile = args.compile and device.type == "cuda"  # compiling on a CPU takes minutes
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, smoke={args.smoke}", flush=True)
    start = time.perf_counter()
    checks = {"pez": check_pez, "joint": check_joint, "sd": check_sd_turbo, "flux": check_flux}
    for part in args.only:
        try:
            checks[part](args, device)
        except Exception as e:  # noqa: BLE001 - the other parts' figures still count
            failed(f"[{part}]", e)
    print_zerogpu_estimates()
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) FAILED: {'; '.join(FAILURES)}", flush=True)
        sys.exit(1)


def print_zerogpu_estimates() -> None:
    """The per-step estimates the app reserves ZeroGPU durations from, to compare with the figures
    above (bf16 eager, ViT-H-14's 24-layer text tower; SD-Turbo fp16): update pez_app/zerogpu.py
    from them (a ZeroGPU slice is a MIG part of an H200: slower than a whole GPU)."""
    try:
        from pez_app import zerogpu
    except ImportError as e:  # the app's extra (gradio) is not installed
        print(f"[zerogpu] estimates not shown: {e}", flush=True)
        return
    print(
        f"[zerogpu] pez_app/zerogpu.py assumes: {zerogpu.STEP_SECONDS_24_LAYERS * 1000:.0f} s per 1,000 bf16 eager "
        f"steps (24 layers, 1 candidate), +{zerogpu.CANDIDATE_SHARE:.0%} per further candidate; SD "
        f"{zerogpu.DENOISE_SECONDS['sd']} s per UNet step + {zerogpu.IMAGE_EXTRA_SECONDS} s decode and score per image; "
        f"x{zerogpu.MARGIN:g} margin",
        flush=True,
    )


if __name__ == "__main__":
    main()
