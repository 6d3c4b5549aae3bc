"""Who and what features describe: a shopper, a catalogue item, a browsing session."""

from feast import Entity, ValueType

from journey.contracts import ITEM, SESSION, USER

user = Entity(name="user", join_keys=[USER], value_type=ValueType.INT64, description="A shopper (shop user id).")
item = Entity(name="item", join_keys=[ITEM], value_type=ValueType.INT64, description="A catalogue item.")
session = Entity(
    name="session",
    join_keys=[SESSION],
    value_type=ValueType.STRING,
    description="A browsing session (30 min inactivity cut), `<user_id>-<start ms>` or the shop's own id.",
)
