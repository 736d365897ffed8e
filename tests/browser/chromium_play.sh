#!/usr/bin/env bash
# Headless Chromium plays a WebM (VP9/Opus) title from a playback URL in a
# <video> element and seeks; the page checks currentTime advances after the
# seek and writes the verdict into document.title, which --dump-dom shows.
# Slow (ffmpeg encode, cluster, browser): not in the default test run.
#
# Usage: tests/browser/chromium_play.sh          (needs chromium, ffmpeg)
# CHROMIUM_ARGS="..." adds browser flags (e.g. --disable-http2).
# Exit 0 and "chromium: PASS ..." when the browser played and seeked.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh
for tool in chromium ffmpeg python3 curl; do
    command -v "$tool" >/dev/null || { echo "chromium_play.sh: $tool is not installed (apt-get install chromium ffmpeg)" >&2; exit 2; }
done
cargo build --release --locked --bin tranzcast >/dev/null 2>&1 || cargo build --release --locked --bin tranzcast
BIN="$CARGO_TARGET_DIR/release/tranzcast"
T="$(mktemp -d /tmp/tz-chromium.XXXXXX)"
DEMO_PID=""; WEB_PID=""
cleanup() {
    [ -n "$DEMO_PID" ] && kill -INT "$DEMO_PID" 2>/dev/null && wait "$DEMO_PID" 2>/dev/null || true
    [ -n "$WEB_PID" ] && kill "$WEB_PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
echo "== a 60 s WebM clip (VP9/Opus, 4 Mbit/s: big enough that the seek needs a range request)"
ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i testsrc=duration=60:size=640x360:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=60 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 \
    -row-mt 1 -b:v 4M -minrate 4M -maxrate 4M -g 50 -c:a libopus -b:a 96k -shortest "$T/clip.webm"
echo "== demo cluster with it"
NO_COLOR=1 RUST_LOG=warn,tranzcast_edge::service=debug "$BIN" demo --serve --json --data "$T/demo" --input "$T/clip.webm" >"$T/demo.out" 2>"$T/demo.err" &
DEMO_PID=$!
for _ in $(seq 600); do [ -f "$T/demo/cluster.json" ] && break; sleep 0.2; done
[ -f "$T/demo/cluster.json" ] || { echo "no cluster.json"; cat "$T/demo.err"; exit 1; }
sleep 0.3
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["playback_url"])' "$T/demo/cluster.json")
CA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca"])' "$T/demo/cluster.json")
case "$URL" in *.webm) ;; *) echo "expected a .webm URL: $URL"; exit 1;; esac
# The page is served over plain HTTP on loopback; the video comes from the edge over HTTPS.
cat >"$T/page.html" <<EOF
<!doctype html><title>loading</title>
<video id=v muted preload=auto src="$URL"></video>
<script>
const v = document.getElementById('v');
const done = (s) => { document.title = s; };
v.addEventListener('error', () => done('FAIL error ' + (v.error && v.error.code)));
v.addEventListener('loadedmetadata', async () => {
  try {
    await v.play();
    v.currentTime = 45;
    v.addEventListener('seeked', () => {
      const at = v.currentTime;
      // Played on after the seek: time advances past the seek point.
      v.addEventListener('timeupdate', () => {
        if (v.currentTime > at + 0.5) done('PASS seeked to ' + at.toFixed(2) + ', playing at ' + v.currentTime.toFixed(2) + ' of ' + v.duration.toFixed(1) + ' s');
      });
    }, {once: true});
  } catch (e) { done('FAIL ' + e); }
});
setTimeout(() => done('FAIL timeout at ' + v.currentTime + ' readyState ' + v.readyState), 50000);
</script>
EOF
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$T" >/dev/null 2>&1 &
WEB_PID=$!
sleep 0.5
# Trust for our CA: the leaf's SPKI hash, as PEERS.md shows (no system trust store touched).
EDGE_PORT=$(echo "$URL" | sed -E 's#https://localhost:([0-9]+)/.*#\1#')
LEAF="$T/leaf.pem"
echo | openssl s_client -connect "127.0.0.1:$EDGE_PORT" -servername localhost 2>/dev/null | openssl x509 >"$LEAF"
SPKI=$(openssl x509 -pubkey -noout -in "$LEAF" | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
echo "== chromium (headless) plays $(basename "$URL" | cut -c1-12)… and seeks"
# Real time, not --virtual-time-budget (virtual time stalls media playback
# while a range response is still streaming): the page's verdict is read
# from its title through the DevTools HTTP endpoint (/json/list).
DT_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$T/profile" --autoplay-policy=no-user-gesture-required \
    --ignore-certificate-errors-spki-list="$SPKI" --host-resolver-rules="MAP localhost 127.0.0.1" \
    --remote-debugging-address=127.0.0.1 --remote-debugging-port="$DT_PORT" ${CHROMIUM_ARGS:-} \
    "http://127.0.0.1:$PORT/page.html" >/dev/null 2>"$T/chromium.err" &
CHROME_PID=$!
TITLE=""
for _ in $(seq 300); do
    TITLE=$(curl -s "http://127.0.0.1:$DT_PORT/json/list" 2>/dev/null | python3 -c '
import json, sys
try:
    pages = [t for t in json.load(sys.stdin) if t.get("type") == "page"]
    print(next((p["title"] for p in pages if p["title"].startswith(("PASS", "FAIL"))), ""))
except Exception:
    print("")' || true)
    [ -n "$TITLE" ] && break
    sleep 0.2
done
kill "$CHROME_PID" 2>/dev/null || true
wait "$CHROME_PID" 2>/dev/null || true
RANGES=$(grep -c 'v1/play/.*range="bytes=' "$T/demo.err" || true)
SEEN=$(grep 'v1/play/' "$T/demo.err" | grep -o 'range="bytes=[0-9]*-[0-9]*"' | sed -E 's/range="(.*)"/\1/' | tr '\n' ' ' || true)
# Played, seeked, and the seek was served by a range in the middle of the file.
if [[ "$TITLE" == PASS* ]] && [ "$RANGES" -ge 2 ]; then
    echo "chromium: $TITLE; ranges at the edge: $SEEN"
    exit 0
fi
echo "chromium: ${TITLE:-no verdict}"; tail -5 "$T/chromium.err"; grep 'v1/play/' "$T/demo.err" | tail -5; exit 1
