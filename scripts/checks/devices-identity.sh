#!/usr/bin/env bash
# Issue 15's CPU identity check at the size of a real matrix: the seed matrix (all eight
# branches of configs/llama-2-70b-gptq.json) on llama2-s, built (1) sequentially, (2) with
# --devices 2 --device cpu, (3) with --devices 2 --device cpu, the parent SIGKILLed after the
# first branch is done and a layer of another has finished, then --resume. Every file's sha256
# (manifest.json without timings, createdAt, resumes, builtOn) must be equal in the three, no
# worker may outlive the killed parent, and the kill must have come mid-build (a branch records
# a resume).
#   bash scripts/checks/devices-identity.sh [SHARED=../shared] [NSAMPLES=16] [SEQLEN=512] [WORK=/tmp/devices-identity]
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
shared="${SHARED:-$root/../shared}"
work="${WORK:-/tmp/devices-identity}"
ns="${NSAMPLES:-16}" sl="${SEQLEN:-512}"
node="${NODE:-node}"
rm -rf "$work" && mkdir -p "$work"
args=(branches --model "$shared/models/llama2-s" --matrix "$root/configs/llama-2-70b-gptq.json" --dataset "$shared/datasets/wikitext-2-v1/valid.txt"
      --split validation --nsamples "$ns" --seqlen "$sl" --device cpu --checkpoint-every 0)
digest() {  # digest DIR: one line per file, sorted
  (cd "$1" && for f in $(find . -type f -not -path './.*' | sort); do
    case "$f" in
      */manifest.json) printf '%s  %s\n' "$("$node" -e 'const m=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));for(const k of ["timings","createdAt","resumes","builtOn"])delete m[k];process.stdout.write(require("crypto").createHash("sha256").update(JSON.stringify(m).split(process.argv[2]).join("<out>")).digest("hex"))' "$f" "$1")" "$f" ;;
      *) sha256sum "$f" ;;
    esac
  done)
}
t0=$(date +%s); "$node" "$root/bin/gptq.js" "${args[@]}" --out "$work/seq" --quiet > "$work/seq.log" 2>&1 || { echo "FAIL sequential run"; tail "$work/seq.log"; exit 1; }
echo "sequential: $(( $(date +%s) - t0 )) s"
t0=$(date +%s); "$node" "$root/bin/gptq.js" "${args[@]}" --out "$work/dev" --devices 2 > "$work/dev.log" 2>&1 || { echo "FAIL --devices 2 run"; tail "$work/dev.log"; exit 1; }
echo "--devices 2: $(( $(date +%s) - t0 )) s"
# killed run: SIGKILL the parent once one branch is finished and another has a checkpointed layer
"$node" "$root/bin/gptq.js" "${args[@]}" --out "$work/kill" --devices 2 > "$work/kill.log" 2>&1 &
parent=$!
reached=""
for i in $(seq 1 600); do
  done_n=$(ls "$work/kill"/*/manifest.json 2>/dev/null | wc -l)
  part=$(ls -d "$work/kill"/*.partial 2>/dev/null | head -1)
  if [ "$done_n" -ge 1 ] && [ -n "$part" ] && ls "$part"/x-*.safetensors > /dev/null 2>&1; then reached=1; break; fi
  sleep 0.5
done
workers=$(pgrep -P $parent | tr '\n' ' ')
if [ -z "$reached" ]; then
  kill -9 $parent $workers 2>/dev/null; echo "FAIL the kill point (a finished branch and another's checkpointed layer) was never reached"; exit 1
fi
kill -9 $parent; wait $parent 2>/dev/null
echo "killed the parent $parent after $(ls "$work/kill"/*/manifest.json 2>/dev/null | wc -l) finished branch(es); workers were: $workers"
alive=""
for i in $(seq 1 40); do alive=""; for w in $workers; do [ -d /proc/$w ] && [ "$(awk '{print $3}' /proc/$w/stat 2>/dev/null)" != Z ] && alive="$alive $w"; done; [ -z "$alive" ] && break; sleep 0.5; done
[ -z "$alive" ] && echo "PASS no worker outlived the parent" || { echo "FAIL workers still running:$alive"; exit 1; }
"$node" "$root/bin/gptq.js" "${args[@]}" --out "$work/kill" --devices 2 --resume > "$work/resume.log" 2>&1 || { echo "FAIL --resume"; tail "$work/resume.log"; exit 1; }
grep -h '"resumes"' "$work/kill"/*/manifest.json | sort | uniq -c | sed 's/^/resumes in manifests: /'
grep -hq '"resumes": [1-9]' "$work/kill"/*/manifest.json || { echo "FAIL no branch records a resume"; exit 1; }
digest "$work/seq" > "$work/seq.sha256"; digest "$work/dev" > "$work/dev.sha256"; digest "$work/kill" > "$work/kill.sha256"
echo "files: $(wc -l < "$work/seq.sha256")"
diff "$work/seq.sha256" "$work/dev.sha256" > /dev/null && echo "PASS --devices 2 = sequential (every file)" || { echo "FAIL --devices 2 differs"; diff "$work/seq.sha256" "$work/dev.sha256" | head; exit 1; }
diff "$work/seq.sha256" "$work/kill.sha256" > /dev/null && echo "PASS killed + --resume = sequential (every file)" || { echo "FAIL killed + resume differs"; diff "$work/seq.sha256" "$work/kill.sha256" | head; exit 1; }
