#!/bin/sh
# fedsim site prerequisites: run on a site host over SSH (idempotent, changes nothing).
# Prints KEY=VALUE lines; exits 1 and prints MISSING=... when something the agent needs is absent.
missing=""
for tool in sh gzip setsid nohup kill cat mkdir sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
echo "ARCH=$(uname -m)"
echo "KERNEL=$(uname -s)"
echo "CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
echo "HOME_FREE_KB=$(df -Pk "$HOME" 2>/dev/null | awk 'NR==2 {print $4}')"
if [ ! -w "$HOME" ]; then missing="$missing writable-home"; fi
if [ -n "$missing" ]; then
    echo "MISSING=${missing# }"
    exit 1
fi
echo "OK=1"
