#!/usr/bin/env bash
# test_plot.sh PLOT GEN — kd-distill-plot on tiny inputs: the curve of two logs (one with a
# resumed, repeated iteration) has one line per label with one point per iteration and the
# legend; a log line that is not JSON is named with file:line; the detection drawing of a
# 64-pixel image with one results file is a PNG of two 6x-enlarged panels 8 pixels apart;
# an unknown image id is named.
set -u
plot=$1 gen=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

printf '%s\n' '{"iter":10,"loss":1.0}' '{"iter":20,"loss":5.0}' '{"iter":10,"epoch":0,"bbox_mAP":0.1}' \
  '{"iter":20,"loss":3.0}' '' '{"iter":30,"loss":2.0}' > "$tmp/a.jsonl"
printf '%s\n' '{"iter":10,"loss":1.0}' '{"iter":20,"loss":1.0}' '{"iter":30,"loss":1.0}' > "$tmp/b.jsonl"
"$plot" curve --out "$tmp/c.svg" --key loss --title 'a <&> b' "mean=$tmp/a.jsonl,$tmp/b.jsonl" "b=$tmp/b.jsonl" ||
  fail "curve exited $?"
[ "$(grep -c '<polyline' "$tmp/c.svg")" = 2 ] || fail "expected 2 lines"
pts=$(grep -m1 '<polyline' "$tmp/c.svg" | sed "s/.*points='\([^']*\)'.*/\1/" | wc -w)
[ "$pts" = 3 ] || fail "expected 3 points on the first line (repeated iteration kept once), got $pts"
grep -q '>mean</text>' "$tmp/c.svg" && grep -q '>b</text>' "$tmp/c.svg" || fail "legend labels missing"
grep -q 'a &lt;&amp;&gt; b' "$tmp/c.svg" || fail "title not escaped"

echo '{"iter":40,' >> "$tmp/a.jsonl"
msg=$("$plot" curve --out "$tmp/d.svg" --key loss "x=$tmp/a.jsonl" 2>&1) && fail "a bad line was accepted"
case $msg in *"a.jsonl:7:"*) ;; *) fail "bad line not named: $msg" ;; esac
"$plot" curve --out "$tmp/d.svg" --key nothing "x=$tmp/b.jsonl" 2> /dev/null && fail "an absent key drew a plot"

"$gen" --out "$tmp/data" --seed 1 --train 1 --val 1 --size-min 64 --size-max 64 --categories 2 --no-progress ||
  fail "crosskd-gen"
id=$(grep -o '{"id": *[0-9]*, *"file_name"' "$tmp/data/annotations/instances_val.json" | head -1 | tr -dc '0-9')
cat=$(grep -A1 '"categories"' "$tmp/data/annotations/instances_val.json" | grep -o '"id": *[0-9]*' | tr -dc '0-9')
echo "[{\"image_id\": $id, \"category_id\": $cat, \"bbox\": [4, 4, 20, 30], \"score\": 0.9}]" > "$tmp/r.json"
"$plot" draw --gt "$tmp/data/annotations/instances_val.json" --images "$tmp/data/val" --image-id "$id" \
  --out "$tmp/d.png" "$tmp/r.json" || fail "draw exited $?"
w=$(od -An -tu1 -j16 -N4 "$tmp/d.png" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
h=$(od -An -tu1 -j20 -N4 "$tmp/d.png" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
iw=$(grep -o "{\"id\": *$id, *\"file_name\": *\"[^\"]*\", *\"width\": *[0-9]*, *\"height\": *[0-9]*" \
  "$tmp/data/annotations/instances_val.json" | sed 's/.*"width": *\([0-9]*\), *"height": *\([0-9]*\)/\1 \2/')
set -- $iw
s=$(( (384 + $2 - 1) / $2 ))
[ "$w" = $((2 * $1 * s + 8)) ] && [ "$h" = $(($2 * s)) ] || fail "PNG is ${w}x$h for a $1x$2 image (scale $s)"
msg=$("$plot" draw --gt "$tmp/data/annotations/instances_val.json" --images "$tmp/data/val" --image-id 999999 \
  --out "$tmp/e.png" "$tmp/r.json" 2>&1) && fail "an unknown image id was accepted"
case $msg in *"no image with id 999999"*) ;; *) fail "unknown id not named: $msg" ;; esac
echo "ok"
