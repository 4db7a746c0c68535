# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_chitty_global_optspecs
    string join \n h/help V/version
end

function __fish_chitty_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_chitty_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_chitty_using_subcommand
    set -l cmd (__fish_chitty_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c chitty -n "__fish_chitty_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chitty -n "__fish_chitty_needs_command" -s V -l version -d 'Print version'
complete -c chitty -n "__fish_chitty_needs_command" -f -a "chat" -d 'Join the chat. At a terminal, a full-screen chat opens: messages scroll above, each as `[L12] alice: hello`; the status line shows the server, the connection, your name and id, your Lamport time and who is online; Enter sends what you type, Esc, Ctrl-C or /quit leaves, PageUp/PageDown scroll, /help lists the commands. In a pipe or script (or with --plain), lines from standard input are sent and messages are printed, one a line; end of input leaves. In both, `/msg ID text` sends a direct message to user ID'
complete -c chitty -n "__fish_chitty_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chitty -n "__fish_chitty_using_subcommand chat" -s u -l username -d 'Your username (1 to 16 characters, no spaces)' -r
complete -c chitty -n "__fish_chitty_using_subcommand chat" -s H -l host -d 'The server: host, host:port, [v6]:port, or an http:// or https:// URL (https:// means --tls); without a port, 8080' -r
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l ca -d 'Trust this certificate authority (PEM) for the server\'s certificate, instead of the system\'s: for a private CA (ca.pem from `chittyctl tls-cert`) or a self-signed certificate. Implies --tls' -r -F
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l log -d 'Append every received message to this file, as `L[12] @ alice: hello`. Default: $XDG_STATE_HOME/chitty/USERNAME.log (~/.local/state/chitty/). It holds chat text, so it is private: created mode 0600, and tightened to that if others could read it' -r -F
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l reconnect-max -d 'Give up after N reconnection attempts in a row (default: keep trying until you leave)' -r
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l tls -d 'Connect over TLS (to a chittyd run with --tls-cert), checking the server\'s certificate against the system\'s trusted certificate authorities, or --ca. The name in --host must match the certificate'
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l no-log -d 'Do not write the client log'
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l plain -d 'Line mode even at a terminal: read lines from standard input, print one message a line. Line mode is chosen by itself when standard input or output is not a terminal'
complete -c chitty -n "__fish_chitty_using_subcommand chat" -l no-reconnect -d 'Do not reconnect when the connection drops or the server restarts: end the session. By default chitty reconnects with exponential back-off (up to 30 s between attempts, randomised), rejoins under the same name, and sends what was typed meanwhile'
complete -c chitty -n "__fish_chitty_using_subcommand chat" -s h -l help -d 'Print help'
complete -c chitty -n "__fish_chitty_using_subcommand help; and not __fish_seen_subcommand_from chat help" -f -a "chat" -d 'Join the chat. At a terminal, a full-screen chat opens: messages scroll above, each as `[L12] alice: hello`; the status line shows the server, the connection, your name and id, your Lamport time and who is online; Enter sends what you type, Esc, Ctrl-C or /quit leaves, PageUp/PageDown scroll, /help lists the commands. In a pipe or script (or with --plain), lines from standard input are sent and messages are printed, one a line; end of input leaves. In both, `/msg ID text` sends a direct message to user ID'
complete -c chitty -n "__fish_chitty_using_subcommand help; and not __fish_seen_subcommand_from chat help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
