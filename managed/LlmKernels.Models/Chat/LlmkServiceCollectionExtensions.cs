using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace LlmKernels.Models.Chat;

/// <summary>Registers an <see cref="LlmkChatClient"/> as the application's <see cref="IChatClient"/>.</summary>
public static class LlmkServiceCollectionExtensions
{
    /// <summary>
    /// A singleton IChatClient over the Hugging Face model folder <paramref name="modelDirectory"/>, loaded on first
    /// use (<see cref="LlmkChatClient.Load"/>) and disposed with the service provider; also resolvable as LlmkChatClient.
    /// </summary>
    public static IServiceCollection AddLlmkChatClient(this IServiceCollection services, string modelDirectory,
                                                       LlmkChatClientOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDirectory);
        return services.AddLlmkChatClient(_ => LlmkChatClient.Load(modelDirectory, options: options));
    }

    /// <summary>A singleton IChatClient made by <paramref name="factory"/> (e.g. over a model already loaded).</summary>
    public static IServiceCollection AddLlmkChatClient(this IServiceCollection services, Func<IServiceProvider, LlmkChatClient> factory)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(factory);
        services.AddSingleton(factory);
        services.AddSingleton<IChatClient>(provider => provider.GetRequiredService<LlmkChatClient>());
        return services;
    }
}
