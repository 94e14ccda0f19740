"""Domain rules: registry, groups, chat, mentions, inbox, tasks, presence. No grpc here."""
