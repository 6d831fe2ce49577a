#!/usr/bin/env python3
"""Writes deploy/kubernetes/prometheusrule.yaml: the alert rules of
deploy/prometheus/rules.yml as a PrometheusRule for the Prometheus Operator.

    scripts/gen-prometheusrule.py          # rewrite the file
    scripts/gen-prometheusrule.py --check  # exit 1 if it is not what rules.yml makes

rules.yml stays the one place the rules are written (promtool checks and unit-tests it);
this file is generated from it, and scripts/check-deploy.sh runs --check. Needs PyYAML.
"""
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
source = root / "deploy/prometheus/rules.yml"
target = root / "deploy/kubernetes/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by scripts/gen-prometheusrule.py: edit
# rules.yml, then run the script. scripts/check-deploy.sh fails when they differ.
#
# The alert rules for the Prometheus Operator. The `release` label is what a
# kube-prometheus-stack installation's ruleSelector usually matches: set it to yours.
# What each alert means and what to do: docs/operations.md, "Alerts: what to do".
"""


class Dumper(yaml.SafeDumper):
    pass


def _text(dumper, value):
    # Multi-line PromQL stays readable: a literal block, as in rules.yml.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _text)


def document() -> dict:
    rules = yaml.safe_load(source.read_text())
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "drawbridge",
            "labels": {
                "app.kubernetes.io/name": "drawbridge",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render() -> str:
    return HEADER + yaml.dump(document(), Dumper=Dumper, sort_keys=False, width=100,
                              allow_unicode=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        # Compared as data: another PyYAML may lay the same document out differently.
        if not target.exists() or yaml.safe_load(target.read_text()) != document():
            print(f"{target.relative_to(root)} is not what {source.relative_to(root)} makes: "
                  "run scripts/gen-prometheusrule.py", file=sys.stderr)
            sys.exit(1)
        print(f"{target.relative_to(root)} matches {source.relative_to(root)}")
    else:
        target.write_text(render())
        print(f"wrote {target.relative_to(root)}")
