"""Low-level run-time helpers shared by training, sampling and evaluation: data-parallel
plumbing (`sde_runtime.distributed`), the device and its performance options
(`sde_runtime.device`) and stable seeds (`sde_runtime.seeding`). No config reading here."""
