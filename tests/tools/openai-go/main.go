package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	client := openai.NewClient(
		option.WithBaseURL("http://127.0.0.1:8080/openai/v1/"),  // the one change
		option.WithHeader("X-API-Key", os.Getenv("RG_API_KEY")), // when RG_API_KEYS is set
	)
	var response *http.Response
	completion, err := client.Chat.Completions.New(
		context.Background(),
		openai.ChatCompletionNewParams{
			Model:    openai.ChatModelGPT4oMini,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello from Go")},
		},
		option.WithHeader("X-RG-User", "alice"),
		option.WithResponseInto(&response),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(completion.Choices[0].Message.Content)
	fmt.Println("receipt:", response.Header.Get("X-RG-Writer"), response.Header.Get("X-RG-Seq"))
}
