#!/usr/bin/env bash
# Regenerate the spoken prompts in engine/prompts/ (8 kHz, mono, 16-bit
# WAV), reproducibly: espeak-ng's "en-us" voice at 150 words a minute,
# resampled by sox in repeatable mode (-R) without dither (-D). The files
# are committed; the engine embeds them. Run after changing a text below.
set -euo pipefail
cd "$(dirname "$0")/../engine/prompts"
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends espeak-ng sox
fi
declare -A text=(
  [connecting]="Please wait, connecting your call."
  [insufficient_balance]="The call cannot be completed: insufficient balance."
  [balance_low]="Your balance is about to run out."
  [enter_code]="Please enter the code."
  [thank_you]="Thank you."
  [your_code]="Your verification code is"
  [code_again]="Again:"
  [digit_0]="zero"
  [digit_1]="one"
  [digit_2]="two"
  [digit_3]="three"
  [digit_4]="four"
  [digit_5]="five"
  [digit_6]="six"
  [digit_7]="seven"
  [digit_8]="eight"
  [digit_9]="nine"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${!text[@]}"; do
  espeak-ng -v en-us -s 150 -w "$tmp/$name.wav" "${text[$name]}"
  sox -R -D "$tmp/$name.wav" -r 8000 -c 1 -b 16 -e signed-integer "$name.wav" gain -n -3
  echo "$name.wav: $(soxi -D "$name.wav") s"
done
sha256sum ./*.wav
