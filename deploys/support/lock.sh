# shellcheck shell=sh
# One run at a time on a node (deploys/support/lock.py), run as: sh -c "$script" lock.sh FILE WHO.
# $1: the lock file; $2: who we are. Prints "locked" and holds the lock until standard input
# closes, or prints "busy <holder>", or "error <why>".
command -v flock >/dev/null || { echo "error flock is not installed (util-linux)"; exit 0; }
# `command`: a redirection that fails on the special built-in exec would end sh (dash, POSIX)
# before it could say why, or fall back to reading a file another user owns.
{ command exec 9>>"$1"; } 2>/dev/null || { command exec 9<"$1"; } 2>/dev/null ||
    { echo "error cannot open $1"; exit 0; }
if flock -n 9; then
    printf '%s, node-pid %s\n' "$2" "$$" > "$1" 2>/dev/null
    echo locked
    exec cat >/dev/null
fi
echo "busy $(head -c 300 "$1" | tr -d '\n')"
