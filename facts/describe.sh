# shellcheck shell=sh
# What the br_netfilter facts read of a path, and what the migration records of it before its
# first edit (operations/br_netfilter.py), so that a record and what a fact reads now compare
# field by field: one "key=value" a line, beginning with "path=": what it is (file, symlink,
# other; nothing more when it is gone), its owner, and for a link the text it holds and the file
# it resolves to, for a file its mode, SHA-256, the SHA-256 it would have without the module's
# lines, and those lines ("module_line=<number>:<text>"). Paths with a newline are not supported.
#
# describe.sh LINE_REGEX PATH...

regex=$1
shift
for p in "$@"; do
    printf 'path=%s\n' "$p"
    if [ -L "$p" ]; then
        echo type=symlink
        stat -c owner=%u:%g -- "$p"
        printf 'target=%s\nresolved=%s\n' "$(readlink -- "$p")" "$(readlink -f -- "$p")"
    elif [ -f "$p" ]; then
        echo type=file
        stat -c mode=%a -- "$p"
        stat -c owner=%u:%g -- "$p"
        s=$(sha256sum <"$p") && echo "sha256=${s%% *}"
        s=$(sed "/$regex/d" -- "$p" | sha256sum) && echo "stripped_sha256=${s%% *}"
        grep -nE -e "$regex" -- "$p" | sed 's/^/module_line=/'
    elif [ -e "$p" ]; then
        echo type=other
    fi
done
