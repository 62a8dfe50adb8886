"""Print what `make synth` produced: stacks, resource counts by type, template paths.

Usage: python -m stacks.summary cdk.out
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def summarize(out_dir: Path) -> str:
    manifest = json.loads((out_dir / "manifest.json").read_text())
    lines = []
    total = stacks = 0
    for name, artifact in sorted(manifest.get("artifacts", {}).items()):
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template_path = out_dir / artifact["properties"]["templateFile"]
        resources = json.loads(template_path.read_text()).get("Resources", {})
        counts = Counter(r["Type"] for r in resources.values() if r["Type"] != "AWS::CDK::Metadata")
        total += sum(counts.values())
        stacks += 1
        lines.append(f"{name}: {sum(counts.values())} resources  ({template_path})")
        for rtype, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {n:4d}  {rtype}")
    lines.append(f"{total} resources in {stacks} stacks; templates in {out_dir}/")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1] if len(argv) > 1 else "cdk.out")
    if not (out_dir / "manifest.json").exists():
        print(f"summary: {out_dir}/manifest.json not found: run `make synth` first", file=sys.stderr)
        return 1
    print(summarize(out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
