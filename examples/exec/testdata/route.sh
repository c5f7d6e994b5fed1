#!/bin/sh
# Test routing script: $1 is the callee, $2 the caller.
case "$1" in
  +1*) echo "sip:$1@10.2.0.1:5060" ;;
  hang) sleep 30 ;;
  *) echo "no route for $1" >&2; exit 1 ;;
esac
