# Outbox table of the master (issue 6).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('dj_cqrs', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='OutboxEvent',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('cqrs_id', models.CharField(max_length=255)),
                ('instance_pk', models.CharField(help_text='Primary key, as a string.', max_length=255)),
                ('signal_type', models.CharField(max_length=10)),
                ('queue', models.CharField(blank=True, help_text='Replica queue of a directed SYNC.', max_length=255, null=True)),
                ('body', models.TextField(help_text='The wire JSON of the event (sent with a fresh `expires`).')),
                ('created_at', models.DateTimeField(help_text='When the event was written (its transaction).')),
                ('sent_at', models.DateTimeField(blank=True, help_text='Empty while pending.', null=True)),
                ('attempts', models.PositiveIntegerField(default=0, help_text='Failed or skipped fast sends.')),
                ('last_error', models.TextField(blank=True, default='')),
                ('claimed_by', models.CharField(blank=True, default='', max_length=32)),
                ('claimed_until', models.DateTimeField(blank=True, help_text='Claim of a relay (databases without SKIP LOCKED).', null=True)),
            ],
            options={
                'verbose_name': 'outbox event',
                'ordering': ('-id',),
                'indexes': [models.Index(condition=models.Q(('sent_at__isnull', True)), fields=['id'], name='dj_cqrs_outbox_pending'), models.Index(condition=models.Q(('sent_at__isnull', True)), fields=['cqrs_id', 'instance_pk', 'id'], name='dj_cqrs_outbox_row'), models.Index(fields=['sent_at'], name='dj_cqrs_outbox_sent')],
            },
        ),
    ]
