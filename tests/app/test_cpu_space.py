"""PEZ_CPU_SPACE (a free CPU Space): the quick search defaults the app starts with and its API shows,
and the low-memory weights (bf16 only where the CPU has native bf16). The memory itself is measured
by `bench/replica.py --resident --low-memory` (BENCHMARKS.md)."""

from __future__ import annotations

import inspect

import pez
from pez.engine import accel
from pez_app import server, settings


def test_cpu_space_defaults():
    assert settings.app_defaults(server.ServerSettings(cpu_space=False))["steps"] == pez.InvertConfig().steps
    d = settings.app_defaults(server.ServerSettings(cpu_space=True))
    assert all(d[k] == v for k, v in server.CPU_SPACE_DEFAULTS.items())
    pez.InvertConfig(**{k: d[k] for k in server.CPU_SPACE_DEFAULTS})  # valid settings
    params = {p.name: p.default for p in settings.setting_params("toy", d)}
    assert params["steps"] == server.CPU_SPACE_DEFAULTS["steps"]  # the API and MCP defaults too
    assert inspect.signature(settings.make_config)  # unchanged conversion


def test_low_memory_weights_only_with_native_bf16(monkeypatch):
    space = server.ServerSettings(device="cpu", cpu_space=True)
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda flags=None: True)
    assert space.weights_dtype() == "bf16"
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda flags=None: False)
    assert space.weights_dtype() is None
    monkeypatch.setattr(accel, "cpu_has_native_bf16", lambda flags=None: True)
    assert server.ServerSettings(device="cpu").weights_dtype() is None  # only on a CPU Space


def test_cpu_space_time_limit_unless_set():
    assert server.ServerSettings.from_env({}).limits.max_run_seconds == server.Limits().max_run_seconds
    space = server.ServerSettings.from_env({"PEZ_CPU_SPACE": "1"})
    assert space.limits.max_run_seconds == server.CPU_SPACE_RUN_SECONDS < server.Limits().max_run_seconds
    both = {"PEZ_CPU_SPACE": "1", "PEZ_MAX_RUN_SECONDS": "45"}
    assert server.ServerSettings.from_env(both).limits.max_run_seconds == 45  # the operator's setting wins
