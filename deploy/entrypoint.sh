#!/bin/sh
# Give the service user its data and inbox folders, then run the command as that user.
# A fresh host's bind-mounted ./inbox (or a new volume) is owned by root, and the worker must
# create done/ and failed/ in it; so the container starts as root only long enough to fix
# ownership of those folders, then drops privileges for good (setpriv, from util-linux).
set -eu
uid="${FEEDBOT_UID:-10001}"
gid="${FEEDBOT_GID:-10001}"
data="${FEEDBOT_DATA_DIR:-/data}"
inbox="${FEEDBOT_INBOX:-$data/inbox}"
if [ "$(id -u)" = "0" ]; then
    mkdir -p "$data" "$inbox" "$inbox/done" "$inbox/failed"
    for folder in "$data" "$inbox" "$inbox/done" "$inbox/failed"; do
        chown "$uid:$gid" "$folder"
    done
    chmod 700 "$data"  # the database and the model are the service's alone
    # Files the service wrote under an earlier uid (the SQLite file, the model) follow.
    find "$data" -xdev -path "$inbox" -prune -o ! -user "$uid" -exec chown "$uid:$gid" {} +
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
fi
exec "$@"
