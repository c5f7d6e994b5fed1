#!/bin/sh
# route.sh USER — the routing script of the SIPp test: prints the SIP URI to
# relay USER's call to, as an OpenSIPS exec() script would. The UAS port
# comes from ROUTE_PORT; an unknown user is an error (exit 1).
case "$1" in
bob | alice) echo "sip:$1@127.0.0.1:${ROUTE_PORT:?ROUTE_PORT not set}" ;;
*)
	echo "route.sh: no route for user '$1'" >&2
	exit 1
	;;
esac
