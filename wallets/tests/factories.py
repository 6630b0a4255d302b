import factory

from wallets.models import Profile
from wallets.services import profile_create, topup_create


class ProfileFactory(factory.django.DjangoModelFactory):
    """A person with both accounts, made through the same service as real sign-ups.

    `coins=N` tops the new person up with N coins through a real ledger transfer.
    """

    class Meta:
        model = Profile

    user_id = factory.Sequence(lambda n: f"viewer{n}")
    nickname = factory.LazyAttribute(lambda profile: f"Nick {profile.user_id}")
    password = "test-pass"

    @classmethod
    def _create(cls, model_class, *, coins: int = 0, **kwargs):
        profile = profile_create(**kwargs)
        if coins:
            topup_create(profile=profile, amount=coins, reference=f"factory-{profile.user_id}")
        return profile
