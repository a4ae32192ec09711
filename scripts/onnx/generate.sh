#!/usr/bin/env bash
# Regenerates Sources/ONNX/onnx.pb.swift from Sources/ONNX/schema/onnx.proto (the ONNX schema as the
# onnx 1.23.2 wheel ships it, IR version 13 / opset 23 era). Run once after changing the schema; the
# output is committed so builds never need protoc or the (slow to build) protoc-gen-swift plugin.
# Needs: protoc (Debian protobuf-compiler) and protoc-gen-swift built from swift-protobuf 1.39.0:
#   git clone -b 1.39.0 https://github.com/apple/swift-protobuf && cd swift-protobuf &&
#   swift build -c release --product protoc-gen-swift
set -euo pipefail
cd "$(dirname "$0")/../.."
PLUGIN=${PROTOC_GEN_SWIFT:-/work/tools/swift-protobuf/.build/release/protoc-gen-swift}
protoc --plugin=protoc-gen-swift="$PLUGIN" --swift_opt=Visibility=Public \
  --swift_out=Sources/ONNX --proto_path=Sources/ONNX/schema Sources/ONNX/schema/onnx.proto
echo "wrote Sources/ONNX/onnx.pb.swift"
