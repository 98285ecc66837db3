#!/usr/bin/env bash
# Whole-model figures for BENCHMARKS.md: `gemmagen bench` over the three published shapes and the weight formats,
# 2 threads, each with the reference path measured in the same run. One JSON object per line on stdout.
# Each runs a prefix of its layers and extrapolates (labelled "extrapolated": true); the reference path
# prefills token by token, which at full depth would take minutes per run.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build Host/GemmaGen.Cli -c Release -v q -nologo >&2
gemmagen=Host/GemmaGen.Cli/bin/Release/net10.0/gemmagen
formats=${FORMATS:-bf16 q8_0 q4_0}
for spec in gemma-2-2b gemma-2-9b gemma-2-27b; do
  case $spec in
    gemma-2-2b) layers=4 ;;
    gemma-2-9b) layers=2 ;;
    gemma-2-27b) layers=1 ;;
  esac
  for format in $formats; do
    "$gemmagen" bench --spec "$spec" --format "$format" --layers "$layers" --threads 2 --prompt 128 --tokens 32 \
      --compare reference --json
  done
done
