"""python -m benchmarks [NAME ...]: run the CPU benchmarks (all by default) and print their verdicts."""

import sys

from benchmarks import (
    activation_cost,
    diagnostics_cost,
    extension_error,
    findings_speed,
    fused_study,
    fusion,
    loop_overhead,
    seed_batching,
    seeds_on_demand,
    shared_data,
    study_overhead,
    versus_dataloader,
)

BENCHMARKS = {
    "loop_overhead": loop_overhead.run,
    "versus_dataloader": versus_dataloader.run,
    "study_overhead": study_overhead.run,
    "activation_cost": activation_cost.run,
    "shared_data": shared_data.run,  # needs psutil: pip install -e ".[bench]"
    "seed_batching": seed_batching.run,
    "seeds_on_demand": seeds_on_demand.run,
    "findings_speed": findings_speed.run,
    "extension_error": extension_error.run,
    "fusion": fusion.run,
    "fused_study": fused_study.run,
    "diagnostics_cost": diagnostics_cost.run,
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.stderr.write(f"python -m benchmarks: error: unknown benchmark(s) {', '.join(unknown)}; "
                         f"choose from: {', '.join(BENCHMARKS)}\n")
        return 2
    for name in names or BENCHMARKS:
        print("\n".join(BENCHMARKS[name]()), flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
