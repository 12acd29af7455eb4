# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_almanac_global_optspecs
    string join \n h/help V/version
end

function __fish_almanac_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_almanac_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_almanac_using_subcommand
    set -l cmd (__fish_almanac_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c almanac -n "__fish_almanac_needs_command" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_needs_command" -s V -l version -d 'Print version'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "run" -d 'Run the daemon'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "check" -d 'Check campaign files; with --config, the whole deployment (exit 0 valid, 1 errors, 2 usage)'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "plan" -d 'Show who gets what, when, in which language'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "simulate" -d 'Replay the engine over a virtual clock'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "resolve" -d 'Resolve a phone number, city, coordinates or IP to a place'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "members" -d 'Import, export, show and forget members'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "migrate" -d 'Apply database migrations'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "climate" -d 'Climate normals: import from Open-Meteo'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "audit" -d 'Print the audit log (pauses, resumes, member changes), newest first'
complete -c almanac -n "__fish_almanac_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand run" -l config -d 'Configuration file (default: the embedded default: SQLite `almanac.db`, `campaigns/`, the sample members, the `log` channel, 127.0.0.1:9464)' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand run" -l database -d 'Database URL: `sqlite:FILE` or `postgres://…`. Wins over the configuration file\'s `database`, as for every other subcommand [default: the configuration\'s `database`, else `sqlite:almanac.db`]' -r
complete -c almanac -n "__fish_almanac_using_subcommand run" -l demo-start -d 'With --demo: the virtual start instant' -r
complete -c almanac -n "__fish_almanac_using_subcommand run" -l demo-speed -d 'With --demo: how many times faster than real time' -r
complete -c almanac -n "__fish_almanac_using_subcommand run" -l demo -d 'Demo: a fresh ledger (`almanac-demo.db`) and a clock that starts on 2027-08-01 and runs 150,000 times faster than real time'
complete -c almanac -n "__fish_almanac_using_subcommand run" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand check" -l config -d 'The daemon\'s configuration: also check it as `almanac run --config FILE` loads it (every out-of-range value, the secrets it names, its member file and `[geo]` files) and the campaigns against its channels' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand check" -l format -d 'Output format' -r -f -a "human\t'Source snippets with carets (and a summary line)'
json\t'A JSON array of diagnostics'
github\t'GitHub Actions annotations: `::error file=…,line=…,col=…::message`'"
complete -c almanac -n "__fish_almanac_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand plan" -l members -d 'Member file (.csv, .jsonl); default: one synthetic member per gazetteer city' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand plan" -l year -d 'Calendar year to plan (UTC); default: the current year' -r
complete -c almanac -n "__fish_almanac_using_subcommand plan" -l format -d 'Output format' -r -f -a "table\t'Aligned text'
json\t'One JSON document'
csv\t'CSV with a header row'"
complete -c almanac -n "__fish_almanac_using_subcommand plan" -l by -d 'Grouping of the rows' -r -f -a "city\t'Per city'
zone\t'Per time zone'
variant\t'Per message variant'"
complete -c almanac -n "__fish_almanac_using_subcommand plan" -l global-cap -d 'A cap across campaigns, `MAX/PERIOD` (`2/7d`), as the daemon\'s `global_cap` (needs `--members`: the synthetic members each see one campaign)' -r
complete -c almanac -n "__fish_almanac_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -l from -d 'First day (UTC), `YYYY-MM-DD`' -r
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -l to -d 'Last day (UTC, inclusive), `YYYY-MM-DD`' -r
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -l members -d 'Member file (.csv, .jsonl)' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -l global-cap -d 'A cap across campaigns, `MAX/PERIOD` (`2/7d`), as the daemon\'s `global_cap`' -r
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -l format -d 'Output: human-readable lines, or one JSON object per push then a summary' -r -f -a "text\t'One line per push, then the summary'
jsonl\t'One JSON object per push, then `{"summary": ...}`'"
complete -c almanac -n "__fish_almanac_using_subcommand simulate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand resolve" -l province -d 'Province / state to disambiguate a city name (`江苏`, `Anhui`)' -r
complete -c almanac -n "__fish_almanac_using_subcommand resolve" -l format -d 'Output format' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object'"
complete -c almanac -n "__fish_almanac_using_subcommand resolve" -l geo-config -d 'A TOML file with a `[geo]`-style table (zones, precedence, climate_overrides)' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand resolve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -f -a "import" -d 'Import a member file (.csv with a header, or .jsonl), upserting by external id. Bad rows are reported with their row number and skipped; exit status 1 when any row was rejected'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -f -a "export" -d 'Write every member to stdout (or a file)'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -f -a "show" -d 'Show one member: record, resolved place, upcoming sends'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -f -a "forget" -d 'Erase one member\'s personal data (PIPL / GDPR): the member row, its resolution and its rendered messages; anonymous ledger counts remain'
complete -c almanac -n "__fish_almanac_using_subcommand members; and not __fish_seen_subcommand_from import export show forget help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from import" -l database -d 'Database URL' -r
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from import" -l batch -d 'Rows per database batch [default: 2000 on SQLite, 10000 on PostgreSQL]' -r
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from import" -l encoding -d 'The file\'s character encoding (`gbk` is accepted for gb18030)' -r -f -a "utf-8\t'UTF-8 (a byte-order mark is skipped)'
gb18030\t'GB18030, which contains GBK and GB2312: Excel\'s "CSV" on Chinese Windows'"
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from export" -l format -d 'Output format' -r -f -a "csv\t'CSV with a header row'
jsonl\t'One JSON object per line'"
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from export" -s o -l output -d 'Write here instead of stdout' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from export" -l database -d 'Database URL' -r
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from show" -l database -d 'Database URL' -r
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from forget" -l database -d 'Database URL' -r
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from forget" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import a member file (.csv with a header, or .jsonl), upserting by external id. Bad rows are reported with their row number and skipped; exit status 1 when any row was rejected'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write every member to stdout (or a file)'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one member: record, resolved place, upcoming sends'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from help" -f -a "forget" -d 'Erase one member\'s personal data (PIPL / GDPR): the member row, its resolution and its rendered messages; anonymous ledger counts remain'
complete -c almanac -n "__fish_almanac_using_subcommand members; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand migrate" -l database -d 'Database URL: `sqlite:FILE` (created if missing) or `postgres://…`' -r
complete -c almanac -n "__fish_almanac_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and not __fish_seen_subcommand_from import help" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and not __fish_seen_subcommand_from import help" -f -a "import" -d 'Compute 1991–2020 monthly normals (ERA5 daily means) for cities and write a CSV'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and not __fish_seen_subcommand_from import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l city -d 'Cities (Chinese or English names, as `almanac resolve` takes them)' -r
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l province -d 'Province to disambiguate every `--city` (e.g. `Anhui` for 宿州 Suzhou)' -r
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l out -d 'The CSV to write (same columns as data/climate_normals.csv)' -r -F
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l api-base -d 'Base URL of the archive API (`/v1/archive` is appended)' -r
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l first-year -d 'First year of the period' -r
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -l last-year -d 'Last year of the period' -r
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from help" -f -a "import" -d 'Compute 1991–2020 monthly normals (ERA5 daily means) for cities and write a CSV'
complete -c almanac -n "__fish_almanac_using_subcommand climate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand audit" -l database -d 'Database URL: `sqlite:FILE` or `postgres://…`' -r
complete -c almanac -n "__fish_almanac_using_subcommand audit" -l limit -d 'At most this many entries (1 to 1000)' -r
complete -c almanac -n "__fish_almanac_using_subcommand audit" -l since -d 'Only entries at or after this instant' -r
complete -c almanac -n "__fish_almanac_using_subcommand audit" -l json -d 'Print the JSON array of `GET /v1/audit` instead of a table'
complete -c almanac -n "__fish_almanac_using_subcommand audit" -s h -l help -d 'Print help'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "run" -d 'Run the daemon'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "check" -d 'Check campaign files; with --config, the whole deployment (exit 0 valid, 1 errors, 2 usage)'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "plan" -d 'Show who gets what, when, in which language'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "simulate" -d 'Replay the engine over a virtual clock'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "resolve" -d 'Resolve a phone number, city, coordinates or IP to a place'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "members" -d 'Import, export, show and forget members'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "migrate" -d 'Apply database migrations'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "climate" -d 'Climate normals: import from Open-Meteo'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "audit" -d 'Print the audit log (pauses, resumes, member changes), newest first'
complete -c almanac -n "__fish_almanac_using_subcommand help; and not __fish_seen_subcommand_from run check plan simulate resolve members migrate climate audit help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c almanac -n "__fish_almanac_using_subcommand help; and __fish_seen_subcommand_from members" -f -a "import" -d 'Import a member file (.csv with a header, or .jsonl), upserting by external id. Bad rows are reported with their row number and skipped; exit status 1 when any row was rejected'
complete -c almanac -n "__fish_almanac_using_subcommand help; and __fish_seen_subcommand_from members" -f -a "export" -d 'Write every member to stdout (or a file)'
complete -c almanac -n "__fish_almanac_using_subcommand help; and __fish_seen_subcommand_from members" -f -a "show" -d 'Show one member: record, resolved place, upcoming sends'
complete -c almanac -n "__fish_almanac_using_subcommand help; and __fish_seen_subcommand_from members" -f -a "forget" -d 'Erase one member\'s personal data (PIPL / GDPR): the member row, its resolution and its rendered messages; anonymous ledger counts remain'
complete -c almanac -n "__fish_almanac_using_subcommand help; and __fish_seen_subcommand_from climate" -f -a "import" -d 'Compute 1991–2020 monthly normals (ERA5 daily means) for cities and write a CSV'
